"""A curriculum: stages of epochs, each with its image size, augmentation probability ramp, MixUp and LR schedule.

epoch_plan() unrolls the stages into one row per epoch; the trainer and `make plan` both walk it, so the
plan you look at is the schedule you train with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from solver.config.experiment import ExperimentConfig, StageSpec
from solver.nn.schedules import LRSchedule


@dataclass(frozen=True)
class EpochPlan:
    epoch: int  # 1-based, over the whole run
    stage: int  # 0-based
    segment: int  # stages that continue one schedule share a segment
    image_size: int
    aug_p: float
    mixup_alpha: float
    cutmix_alpha: float


@dataclass(frozen=True)
class Segment:
    """Consecutive stages driven by one LR schedule (a stage with continue_schedule joins the previous one)."""

    first_epoch: int
    epochs: int
    stage: StageSpec  # the stage whose lr and schedule the segment uses


def _ramp(aug_p, i: int, n: int) -> float:
    start, end = aug_p if isinstance(aug_p, tuple) else (aug_p, aug_p)
    return start if n == 1 else start + (end - start) * i / (n - 1)


def plan_stages(cfg: ExperimentConfig) -> tuple[list[EpochPlan], list[Segment]]:
    stages = cfg.train.resolved_stages(cfg.data.image_size)
    epochs, segments, epoch = [], [], 1
    for s, stage in enumerate(stages):
        if stage.continue_schedule and segments:
            last = segments[-1]
            segments[-1] = Segment(last.first_epoch, last.epochs + stage.epochs, last.stage)
        else:
            segments.append(Segment(epoch, stage.epochs, stage))
        for i in range(stage.epochs):
            epochs.append(
                EpochPlan(epoch, s, len(segments) - 1, stage.image_size, _ramp(stage.aug_p, i, stage.epochs), stage.mixup_alpha, stage.cutmix_alpha)
            )
            epoch += 1
    return epochs, segments


def steps_per_epoch(n_train: int, batch_size: int, accumulation_steps: int) -> int:
    """Optimizer steps per epoch (the loader drops the last incomplete batch)."""
    batches = n_train // batch_size if n_train > batch_size else 1
    return max(1, math.ceil(batches / accumulation_steps))


def make_schedule(optimizer, segment: Segment, n_steps: int, greater_is_better: bool) -> LRSchedule:
    return LRSchedule(optimizer, segment.stage.schedule, segment.stage.lr, segment.epochs, n_steps, greater_is_better)


def check_schedules(cfg: ExperimentConfig, n_train: int, greater_is_better: bool = True) -> None:
    """Build every segment's schedule once, so a bad schedule fails before any training starts."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    n_steps = steps_per_epoch(n_train, cfg.data.batch_size, cfg.train.accumulation_steps)
    for segment in plan_stages(cfg)[1]:
        make_schedule(optimizer, segment, n_steps, greater_is_better)


def lr_plan(cfg: ExperimentConfig, n_steps: int, greater_is_better: bool = True) -> pd.DataFrame:
    """One row per optimizer step: epoch, stage, step, lr, image size, augmentation probability, MixUp alpha.

    ReduceLROnPlateau reacts to validation scores that do not exist before training: the plan shows it
    without reductions.
    """
    epochs, segments = plan_stages(cfg)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    rows, step, schedule = [], 0, None
    for ep in epochs:
        segment = segments[ep.segment]
        if ep.epoch == segment.first_epoch:
            schedule = make_schedule(optimizer, segment, n_steps, greater_is_better)
        for _ in range(n_steps):
            rows.append(
                {
                    "epoch": ep.epoch,
                    "stage": ep.stage,
                    "step": step,
                    "lr": optimizer.param_groups[0]["lr"],
                    "image_size": ep.image_size,
                    "aug_p": ep.aug_p,
                    "mixup_alpha": ep.mixup_alpha,
                    "cutmix_alpha": ep.cutmix_alpha,
                }
            )
            optimizer.step()
            schedule.after_batch()
            step += 1
        schedule.after_epoch(np.nan, np.nan)
    return pd.DataFrame(rows)
