"""Fitting an experiment's recipe to a time budget (make baseline): a throughput probe, then every stage scaled.

The probe trains fold 0's model for a few batches at each stage's image size and augmentation, evaluates a few
validation batches and writes a checkpoint, on this machine, with the experiment's own Trainer. From those
seconds, `fold_seconds` predicts a fold of any epoch count; `fit_epochs` scales every stage of the curriculum by
one factor (each keeps at least one epoch: the clean fine-tune at the end is never dropped) until the folds fit.
Compressing the curriculum, not cutting it off at the end as train.time_budget_minutes does, keeps its shape:
warmup, small images first, the clean fine-tune last.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import Subset

from solver.base.atomic import save_torch
from solver.nn.curriculum import make_schedule
from solver.nn.runtime import make_loader, shard_loader
from solver.runs.source import BEST_CHECKPOINT, LAST_CHECKPOINT
from solver.train.experiment import Experiment, build_model, eval_transform, fold_datasets, train_transform
from solver.train.loop import Trainer

SMALL, LARGE = 2, 6  # probe batches: the difference of the two runs is the cost of a batch, the rest is fixed
SLOW_BATCH = 2.0  # seconds: a batch slower than this is timed once


@dataclass(frozen=True)
class StageCost:
    """Seconds, measured by the probe for one stage of the curriculum."""

    train_batch: float  # one training batch: forward, backward, optimizer step (and EMA), its augmentations
    epoch_fixed: float  # per epoch besides the batches: a loader, the checkpoints
    eval_image: float  # one image forward only (validation, prediction)


@dataclass(frozen=True)
class Probe:
    stages: list[StageCost]
    fold_setup: float  # datasets and model of a fold
    batches: int  # training batches an epoch
    n_valid: int  # validation rows of a fold
    n_test: int
    evals_per_epoch: int  # 2 with an EMA (both are evaluated), else 1
    seconds: float  # what the probe itself took

    def epoch_seconds(self, stage: int) -> float:
        cost = self.stages[stage]
        return self.batches * cost.train_batch + cost.epoch_fixed + self.evals_per_epoch * self.n_valid * cost.eval_image

    def fold_seconds(self, epochs: list[int]) -> float:
        """A fold: setup, the epochs of each stage, then its OOF and test predictions."""
        training = sum(n * self.epoch_seconds(s) for s, n in enumerate(epochs))
        return self.fold_setup + training + (self.n_valid + self.n_test) * self.stages[-1].eval_image

    def inference_seconds(self, images: int) -> float:
        """Forward passes of the final stage's model (TTA views, embeddings)."""
        return images * self.stages[-1].eval_image

    def to_json(self) -> dict:
        return asdict(self)


def probe(exp: Experiment, device: torch.device) -> Probe:
    """Time fold 0's training at each stage of exp's curriculum; the model is thrown away."""
    start = time.perf_counter()
    cfg, comp = exp.cfg, exp.comp
    train_ds, valid_ds, _, valid_mask = fold_datasets(exp, 0)
    model = build_model(exp)
    trainer = Trainer(model, cfg, comp.metric, comp.cfg.task, comp.num_classes, device, len(train_ds))
    setup = time.perf_counter() - start
    batch, workers = cfg.data.batch_size, cfg.data.num_workers
    y_valid = exp.y[valid_mask]
    first_epochs = [next(ep for ep in trainer.epochs if ep.stage == s) for s in range(trainer.epochs[-1].stage + 1)]
    costs = []
    with tempfile.TemporaryDirectory() as tmp:
        for ep in first_epochs:
            trainer.schedule = make_schedule(trainer.optimizer, trainer.segments[ep.segment], trainer.n_steps, comp.metric.greater_is_better)
            train_ds.transform = train_transform(exp)(ep.image_size, ep.aug_p, cfg.train.seed)

            def train_seconds(batches: int, ep=ep) -> float:
                part = Subset(train_ds, range(min(len(train_ds), batches * batch)))
                loader = make_loader(part, batch, True, workers, cfg.train.seed, device)
                began = time.perf_counter()
                trainer.train_epoch(loader, ep, f"probe {ep.image_size} px")
                return time.perf_counter() - began

            slow = train_seconds(1) > SLOW_BATCH  # the first batches at a new size allocate and tune kernels
            if slow:  # a big model on a small device: one more batch says enough, and the probe stays a small part of the budget
                small, per_batch = 0.0, train_seconds(1)
            else:
                small, large = train_seconds(SMALL), train_seconds(LARGE)
                # the difference is one batch's cost; a noisy machine may shrink it, never below 80% of the plain mean
                per_batch = max((large - small) / (LARGE - SMALL), 0.8 * large / LARGE)
            valid_ds.transform = eval_transform(exp)(ep.image_size)
            n_eval = min(len(valid_ds), (1 if slow else 4) * 2 * batch)
            loader = shard_loader(Subset(valid_ds, range(n_eval)), 2 * batch, workers, device)
            began = time.perf_counter()
            trainer.evaluate(loader, y_valid[:n_eval])
            eval_image = (time.perf_counter() - began) / n_eval
            began = time.perf_counter()
            save_torch(trainer.state_dict(), Path(tmp) / LAST_CHECKPOINT)  # the last state every epoch, the best weights when they improve
            save_torch({"model": trainer.model.state_dict()}, Path(tmp) / BEST_CHECKPOINT)
            checkpoints = time.perf_counter() - began
            fixed = 0.0 if slow else max(0.0, small - SMALL * per_batch)
            costs.append(StageCost(per_batch, fixed + checkpoints, eval_image))
    return Probe(
        stages=costs,
        fold_setup=setup,
        batches=trainer.n_steps * cfg.train.accumulation_steps,
        n_valid=len(valid_ds),
        n_test=len(exp.test_df),
        evals_per_epoch=2 if cfg.train.ema_decay else 1,
        seconds=time.perf_counter() - start,
    )


def fit_epochs(recipe: list[int], probe: Probe, seconds: float, n_folds: int) -> list[int] | None:
    """The recipe's epochs per stage scaled by one factor, each stage at least one epoch, so that n_folds folds take at
    most `seconds`; the recipe itself when it fits; None when one epoch per stage does not."""
    per_fold = seconds / n_folds
    if probe.fold_seconds(recipe) <= per_fold:
        return list(recipe)
    if probe.fold_seconds([1] * len(recipe)) > per_fold:
        return None

    def scaled(factor: float) -> list[int]:
        return [max(1, math.floor(n * factor)) for n in recipe]

    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if probe.fold_seconds(scaled(middle)) <= per_fold else (low, middle)
    epochs = scaled(low)
    # floor() leaves time over: give it, an epoch at a time, to the stage furthest below its share
    while True:
        short = sorted(range(len(recipe)), key=lambda s: epochs[s] - recipe[s] * low)
        grown = next((epochs[:s] + [epochs[s] + 1] + epochs[s + 1 :] for s in short if epochs[s] < recipe[s]), None)
        if grown is None or probe.fold_seconds(grown) > per_fold:
            return epochs
        epochs = grown


def recipe_epochs(exp: Experiment) -> list[int]:
    """Epochs per stage of the experiment as written (one stage when it declares none)."""
    return [stage.epochs for stage in exp.cfg.train.resolved_stages(exp.cfg.data.image_size)]


def compressed_overrides(exp: Experiment, epochs: list[int]) -> list[str]:
    """key=value overrides that train exp with these epochs per stage; the warmup shrinks by the same factor."""
    spec = exp.cfg.train
    factor = sum(epochs) / spec.epochs
    overrides = [f"train.epochs={sum(epochs)}"]
    if spec.stages:
        stages = [stage.model_dump(mode="json", exclude_unset=True) | {"epochs": n} for stage, n in zip(spec.stages, epochs)]
        overrides.append(f"train.stages={json.dumps(stages)}")
    if spec.schedule.warmup_epochs and factor < 1:  # whole epochs: a schedule stepped per epoch warms up in whole ones
        overrides.append(f"train.schedule.warmup_epochs={round(spec.schedule.warmup_epochs * factor)}")
    return overrides
