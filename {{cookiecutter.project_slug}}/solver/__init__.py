"""The shared solver library every competition in this repository uses.

One folder per stage, in the order the data flows; each imports only from the folders above it in this list:
  base/         one-line errors, atomic writes, provenance, a competition's own code, CLI parsing, thread shares
  config/       the strict YAML loader and the schemas (a section of a file is a *Spec, a whole file a *Config)
  competition/  the raw Kaggle files: contract, images, data check, download, folds, metrics, submission format
  runs/         runs/<comp>/: the source folder (its files, score, staleness), run compatibility, leaderboard, plots
  nn/           datasets and augmentations, timm models, optimizers, schedules, curriculum, devices, DDP, inference
  train/        the loop of one fold, an experiment's folds (resume, locks, join), full refit, plan, tracking, tuning
  predict/      predictions from the folds' checkpoints: plain, TTA-N, TTA=auto, embeddings
  level2/       kNN features, ensembles, stacks, pseudo-labels
  adapt/        prior shift, head tuning, multilabel thresholds
  submit/       the validated submission and its ledger, the offline package for code competitions
  commands/     one thin module per verb of `python -m solver <verb>` (__main__.py dispatches)

Importing it has no side effects; the modules are plain functions and small dataclasses.
"""

__version__ = "0.1.0"
