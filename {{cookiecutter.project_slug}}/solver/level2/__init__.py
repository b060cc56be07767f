"""Level 2 over the sources: kNN features, ensembles, stacks, pseudo-labels."""
