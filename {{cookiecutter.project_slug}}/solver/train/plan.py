"""The per-step plan of an experiment (lr, image size, augmentation, MixUp) without training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from solver.base.atomic import write_csv
from solver.competition.contract import Competition
from solver.competition.folds import load_folds
from solver.config.experiment import load_experiment_config
from solver.nn.curriculum import lr_plan, steps_per_epoch
from solver.runs.plots import plot_plan


def write_plan(root: Path, comp_name: str, exp_name: str, overrides=()) -> tuple[Path, Path, pd.DataFrame]:
    """The per-step plan of fold 0 (folds differ by a few samples) as CSV and PNG, without training."""
    comp = Competition.load(root, comp_name)
    cfg = load_experiment_config(comp.experiment_path(exp_name), overrides)
    n_train = int((load_folds(comp) != 0).sum())
    n_steps = steps_per_epoch(n_train, cfg.data.batch_size, cfg.train.accumulation_steps)
    plan = lr_plan(cfg, n_steps, comp.metric.greater_is_better)
    out = comp.runs_dir / exp_name
    csv_path = write_csv(plan, out / "plan.csv")
    plateau = any(stage.schedule.name == "plateau" for stage in cfg.train.resolved_stages(cfg.data.image_size))
    note = " (plateau: reductions depend on validation, not shown)" if plateau else ""
    png_path = plot_plan(plan, out / "plan.png", f"{comp_name}/{exp_name}: {n_steps} steps per epoch{note}")
    return csv_path, png_path, plan
