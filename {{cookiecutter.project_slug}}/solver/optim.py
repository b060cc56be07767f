"""Optimizers (timm's factory) and LR schedules (torch's own schedulers)."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from torch.optim import lr_scheduler

from solver.config import TrainSpec


def create_optimizer(model: torch.nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    # timm's factory puts norms and biases in a group without weight decay.
    name = {"adam": "adam", "adamw": "adamw", "sgd": "sgd" if spec.nesterov else "momentum"}[spec.optimizer]
    kwargs = {"momentum": spec.momentum} if spec.optimizer == "sgd" else {}
    return create_optimizer_v2(model, opt=name, lr=spec.lr, weight_decay=spec.weight_decay, **kwargs)


def create_scheduler(optimizer: torch.optim.Optimizer, spec: TrainSpec, greater_is_better: bool):
    """An epoch-level scheduler, or None for a constant LR. Plateau steps on the validation metric."""
    if spec.scheduler == "plateau":
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if greater_is_better else "min", factor=spec.plateau_factor, patience=spec.plateau_patience, min_lr=spec.min_lr
        )
    if spec.scheduler == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs, eta_min=spec.min_lr)
    return None


def step_scheduler(scheduler, metric: float) -> None:
    if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
        scheduler.step(metric)
    elif scheduler is not None:
        scheduler.step()
