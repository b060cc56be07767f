"""Training an experiment: the loop of one fold, the folds of an experiment (resume, locks, join), the full refit, tracking and tuning."""
