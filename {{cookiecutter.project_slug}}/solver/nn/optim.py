"""Optimizers from config, through timm's factory."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2

from solver.config.experiment import TrainSpec


def create_optimizer(model: torch.nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    # timm's factory puts norms and biases in a group without weight decay.
    name = {"adam": "adam", "adamw": "adamw", "sgd": "sgd" if spec.nesterov else "momentum"}[spec.optimizer]
    kwargs = {"momentum": spec.momentum} if spec.optimizer == "sgd" else {}
    return create_optimizer_v2(model, opt=name, lr=spec.lr, weight_decay=spec.weight_decay, **kwargs)
