"""Stages, ramps, MixUp and the plan written without training."""

import numpy as np
import pandas as pd
import pytest
import torch

from solver.config.experiment import ExperimentConfig
from solver.nn.curriculum import lr_plan, plan_stages
from solver.train.loop import make_mixup
from solver.train.plan import write_plan
from tests.synthetic import make_competition

RECIPE = {
    "data": {"image_size": 32, "batch_size": 8},
    "train": {
        "lr": 0.01,
        "schedule": {"name": "cyclic", "half_cycle_epochs": 1, "warmup_steps": 4},
        "stages": [
            {"epochs": 3, "image_size": 16, "aug_p": [0.2, 0.6]},
            {"epochs": 2, "image_size": 24, "aug_p": 0.8, "mixup_alpha": 0.4, "continue_schedule": True},
            {"epochs": 1, "aug_p": 0.0, "lr": 0.001, "schedule": {"name": "constant"}},
        ],
    },
}


def test_stages_unroll_into_epochs_with_ramps_and_segments():
    epochs, segments = plan_stages(ExperimentConfig.model_validate(RECIPE))
    assert [e.image_size for e in epochs] == [16, 16, 16, 24, 24, 32]
    assert [e.aug_p for e in epochs] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.0])
    assert [e.mixup_alpha for e in epochs] == [0, 0, 0, 0.4, 0.4, 0]
    assert [(s.first_epoch, s.epochs) for s in segments] == [(1, 5), (6, 1)]  # stage 2 continues stage 1's schedule


def test_plan_follows_the_schedule_across_stages():
    plan = lr_plan(ExperimentConfig.model_validate(RECIPE), n_steps=5)
    assert len(plan) == 6 * 5 and list(plan.columns[:4]) == ["epoch", "stage", "step", "lr"]
    # Warmup scales the first value of the schedule it leads into (CyclicLR starts at base_lr = lr / 10), as torch's SequentialLR does.
    assert plan["lr"].iloc[0] == pytest.approx(0.001 * 0.01)
    assert (plan[plan.stage == 2]["lr"] == 0.001).all()  # the fine-tune stage restarts at its own lr
    continued = plan[plan.stage.isin([0, 1])]["lr"].to_numpy()
    assert len(np.unique(np.round(continued, 8))) > 5  # one cyclic schedule runs through stages 0 and 1


SCHEDULES = [
    {"name": "plateau"},
    {"name": "constant"},
    {"name": "cyclic", "mode": "triangular"},
    {"name": "cyclic", "mode": "triangular2"},
    {"name": "cyclic", "mode": "exp_range", "gamma": 0.99},
    {"name": "cosine", "warmup_epochs": 1},
    {"name": "cosine_restarts", "restart_epochs": 1},
    {"name": "onecycle"},
    {"name": "step", "step_epochs": 1},
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_make_plan_writes_csv_and_png_for_every_schedule(tmp_path, schedule):
    make_competition(tmp_path, experiment={"data": {"image_size": 32, "batch_size": 8}, "train": {"epochs": 3, "schedule": schedule}})
    csv_path, png_path, plan = write_plan(tmp_path, "synth", "tiny")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = pd.read_csv(csv_path)
    assert len(saved) == 3 * 3  # 24 training images per fold / batch 8 = 3 steps, 3 epochs
    assert {"epoch", "step", "lr", "image_size", "aug_p", "mixup_alpha"} <= set(saved.columns)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_mixup_is_the_convex_combination_with_the_reversed_batch(task):
    np.random.seed(0)
    x = torch.randn(4, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 1]) if task == "multiclass" else torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    onehot = torch.eye(3)[y] if task == "multiclass" else y
    mixup = make_mixup(0.4, 0.0, 3, task)
    x_mixed, y_mixed = mixup(x.clone(), y.clone())
    lam = (y_mixed[0] - onehot.flip(0)[0]) / (onehot[0] - onehot.flip(0)[0] + 1e-12)
    lam = float(lam[(onehot[0] - onehot.flip(0)[0]).abs() > 0][0])
    assert 0 <= lam <= 1
    torch.testing.assert_close(x_mixed, lam * x + (1 - lam) * x.flip(0))
    torch.testing.assert_close(y_mixed, lam * onehot + (1 - lam) * onehot.flip(0))
    assert make_mixup(0.0, 0.0, 3, task) is None
