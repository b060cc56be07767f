"""The strict loader and the schemas of every YAML file: competition contract, experiment, level 2, adapt.

One schema class per idea, its defaults written once, and the code that uses the settings takes the
validated object itself (kNN: KnnSpec, stack: LgbmSpec, head tuning: HeadSpec). Class names say what they are:

- `*Config`: a whole file (CompetitionConfig, ExperimentConfig, EnsembleConfig, StackConfig, AdaptConfig);
- `*Spec`: a section of a file or one entry of it (ModelSpec, TrainSpec, StageSpec, KnnSpec, LgbmSpec, ...).
"""
