"""The strict loader and the schemas of every YAML file: competition contract, experiment, level 2, adapt."""
