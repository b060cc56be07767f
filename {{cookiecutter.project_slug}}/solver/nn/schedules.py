"""LR schedules from config, built from torch.optim.lr_scheduler (no schedule math here).

A schedule steps per batch ("step") or per epoch, as it should: CyclicLR and OneCycleLR per batch;
cosine, cosine with restarts and step per epoch unless `interval: step` says otherwise; ReduceLROnPlateau
per epoch on the validation metric or loss. Linear warmup (LinearLR) always ramps per optimizer step
(warmup_epochs: 1 is one epoch's worth of steps, not one epoch at the start factor): with a per-step schedule
through SequentialLR; with a per-epoch schedule or ReduceLROnPlateau, which SequentialLR cannot drive in
steps, warmup runs first and the schedule takes over, stepping per epoch, when it ends.
"""

from __future__ import annotations

import math

import torch
from torch.optim import lr_scheduler

from solver.base.errors import SolverError
from solver.config.experiment import ScheduleSpec

PER_STEP = {"cyclic", "onecycle"}


def interval_of(spec: ScheduleSpec) -> str:
    if spec.name in PER_STEP:
        if spec.interval == "epoch":
            raise SolverError(f"schedule '{spec.name}' steps per batch; remove interval: epoch")
        return "step"
    return spec.interval or "epoch"


def warmup_length(spec: ScheduleSpec, steps_per_epoch: int, interval: str) -> int:
    """Warmup in optimizer steps (a per-epoch schedule takes over at an epoch's end: whole warmup_epochs only)."""
    if spec.warmup_steps and spec.warmup_epochs:
        raise SolverError("schedule: give warmup_steps or warmup_epochs, not both")
    if interval == "step":
        return spec.warmup_steps or round(spec.warmup_epochs * steps_per_epoch)
    if spec.warmup_steps:
        raise SolverError(f"schedule '{spec.name}' steps per epoch: give warmup_epochs, or set interval: step to warm up in steps")
    if spec.warmup_epochs != int(spec.warmup_epochs):
        raise SolverError(f"schedule '{spec.name}' steps per epoch: warmup_epochs must be whole ({spec.warmup_epochs}); or set interval: step")
    return int(spec.warmup_epochs) * steps_per_epoch


def _main_scheduler(optimizer, spec: ScheduleSpec, lr: float, length: int, steps_per_epoch: int, interval: str):
    """The schedule after warmup; `length` is how many of its units (steps or epochs) it runs."""
    per = steps_per_epoch if interval == "step" else 1  # units per epoch
    if spec.name == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if spec.name == "cyclic":
        base_lr = spec.base_lr if spec.base_lr is not None else lr / 10
        return lr_scheduler.CyclicLR(
            optimizer,
            base_lr=base_lr,
            max_lr=lr,
            step_size_up=max(1, round(spec.half_cycle_epochs * steps_per_epoch)),
            mode=spec.mode,
            gamma=spec.gamma,
            cycle_momentum=False,  # Adam has no momentum to cycle; SGD keeps its own
        )
    if spec.name == "onecycle":
        return lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=lr,
            total_steps=max(length, 2),
            pct_start=spec.pct_start,
            div_factor=spec.div_factor,
            final_div_factor=spec.final_div_factor,
            cycle_momentum=False,
        )
    if spec.name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(length, 1), eta_min=spec.min_lr)
    if spec.name == "cosine_restarts":
        first_cycle = max(1, round(spec.restart_epochs * per))
        return lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=first_cycle, T_mult=spec.restart_mult, eta_min=spec.min_lr)
    if spec.name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, round(spec.step_epochs * per)), gamma=spec.step_gamma)
    raise SolverError(f"schedule '{spec.name}' has no builder")  # config validation lists the valid names


class LRSchedule:
    """One stage's learning-rate schedule: call after_batch() after every optimizer step, after_epoch() after
    validation. state_dict()/load_state_dict() make it resumable."""

    def __init__(self, optimizer: torch.optim.Optimizer, spec: ScheduleSpec, lr: float, epochs: int, steps_per_epoch: int, greater_is_better: bool):
        self.spec = spec
        self.interval = interval_of(spec)
        for group in optimizer.param_groups:  # a new stage restarts from its own lr
            group["lr"] = lr
            group.pop("initial_lr", None)
        self.warmup, self.warmup_done, self.warmup_scheduler, self.warmed_this_epoch = 0, 0, None, False
        if spec.name == "plateau":
            # Plateau steps per epoch on a metric; its warmup runs per step before it.
            self.warmup = warmup_length(spec, steps_per_epoch, "step")
            self.plateau = lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="max" if (spec.monitor == "metric" and greater_is_better) else "min",
                factor=spec.factor,
                patience=spec.patience,
                min_lr=spec.min_lr,
            )
            self.scheduler = None
        else:
            units = epochs * steps_per_epoch if self.interval == "step" else epochs
            self.warmup = warmup_length(spec, steps_per_epoch, self.interval)
            warmup_units = self.warmup // (1 if self.interval == "step" else steps_per_epoch)
            if warmup_units >= units:
                raise SolverError(f"schedule '{spec.name}': warmup ({warmup_units} {self.interval}s) is as long as the stage ({units}); shorten it")
            self.scheduler = _main_scheduler(optimizer, spec, lr, units - warmup_units, steps_per_epoch, self.interval)
            if self.warmup and self.interval == "step":
                warmup = lr_scheduler.LinearLR(optimizer, start_factor=spec.warmup_start_factor, total_iters=self.warmup)
                self.scheduler = lr_scheduler.SequentialLR(optimizer, [warmup, self.scheduler], milestones=[self.warmup])
                return
        if self.warmup:  # built after the schedule, whose constructor sets the lr: warmup starts from lr * start factor
            self.warmup_scheduler = lr_scheduler.LinearLR(optimizer, start_factor=spec.warmup_start_factor, total_iters=self.warmup)

    def _warming_up(self) -> bool:
        return self.warmup_scheduler is not None and self.warmup_done < self.warmup

    def after_batch(self) -> None:
        if self._warming_up():
            self.warmup_scheduler.step()
            self.warmup_done += 1
            self.warmed_this_epoch = True
        elif self.spec.name != "plateau" and self.interval == "step":
            self.scheduler.step()

    def after_epoch(self, metric: float, loss: float) -> None:
        if self.warmed_this_epoch or self._warming_up():  # the schedule takes over from the first epoch after warmup
            self.warmed_this_epoch = False
            return
        if self.spec.name == "plateau":
            value = metric if self.spec.monitor == "metric" else loss
            if not math.isnan(value):
                self.plateau.step(value)
        elif self.interval == "epoch":
            self.scheduler.step()

    def state_dict(self) -> dict:
        warm = {"warmup": self.warmup_scheduler.state_dict() if self.warmup_scheduler else None, "warmup_done": self.warmup_done}
        if self.spec.name == "plateau":
            return {"plateau": self.plateau.state_dict(), **warm}
        return {"scheduler": self.scheduler.state_dict(), **warm}

    def load_state_dict(self, state: dict) -> None:
        if self.warmup_scheduler and state.get("warmup"):
            self.warmup_scheduler.load_state_dict(state["warmup"])
        # A checkpoint of an older solver, whose warmup ran per epoch: resumed with its warmup over.
        self.warmup_done = state.get("warmup_done", self.warmup)
        if self.spec.name == "plateau":
            self.plateau.load_state_dict(state["plateau"])
        else:
            self.scheduler.load_state_dict(state["scheduler"])
