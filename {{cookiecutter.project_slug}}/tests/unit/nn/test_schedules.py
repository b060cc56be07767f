"""Every schedule from a config gives the LR sequence of torch's own scheduler built with the same parameters."""

import pytest
import torch
import yaml
from torch.optim import lr_scheduler

from solver.base.errors import SolverError
from solver.config.experiment import ExperimentConfig, ScheduleSpec, load_experiment_config
from solver.nn.schedules import LRSchedule

LR, EPOCHS, STEPS = 0.1, 6, 5  # steps per epoch


def optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)


def ours(spec: dict, metrics=None) -> list[float]:
    """LR at every optimizer step of EPOCHS epochs, driven as the trainer drives it."""
    opt = optimizer()
    schedule = LRSchedule(opt, ScheduleSpec(**spec), LR, EPOCHS, STEPS, greater_is_better=True)
    lrs = []
    for epoch in range(EPOCHS):
        for _ in range(STEPS):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.after_batch()
        schedule.after_epoch(metrics[epoch] if metrics else 0.5, 1.0)
    return lrs


def torch_per_step(build) -> list[float]:
    opt = optimizer()
    scheduler = build(opt)
    lrs = []
    for _ in range(EPOCHS * STEPS):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


def torch_per_epoch(build) -> list[float]:
    opt = optimizer()
    scheduler = build(opt)
    lrs = []
    for _ in range(EPOCHS):
        lrs += [opt.param_groups[0]["lr"]] * STEPS
        opt.step()
        scheduler.step()
    return lrs


def torch_warmup_steps_then_epochs(warmup_epochs: int, build, metrics=None) -> list[float]:
    """LinearLR per step over warmup_epochs epochs of steps, then the per-epoch scheduler from the next epoch on."""
    opt = optimizer()
    main = build(opt)
    warmup = lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=warmup_epochs * STEPS)
    lrs = []
    for epoch in range(EPOCHS):
        for _ in range(STEPS):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if epoch < warmup_epochs:
                warmup.step()
        if epoch >= warmup_epochs:
            main.step(metrics[epoch]) if metrics else main.step()
    return lrs


def warm(opt, n, main):
    return lr_scheduler.SequentialLR(opt, [lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=n), main], milestones=[n])


N = EPOCHS * STEPS


def cyclic(o, **kwargs):
    return lr_scheduler.CyclicLR(o, kwargs.pop("base_lr", LR / 10), LR, step_size_up=5, cycle_momentum=False, **kwargs)


def cosine(o, t_max):
    return lr_scheduler.CosineAnnealingLR(o, T_max=t_max, eta_min=1e-6)


CASES = {
    "cyclic-triangular": (
        {"name": "cyclic", "half_cycle_epochs": 1},
        lambda o: cyclic(o),
    ),
    "cyclic-triangular2": (
        {"name": "cyclic", "mode": "triangular2", "half_cycle_epochs": 1},
        lambda o: cyclic(o, mode="triangular2"),
    ),
    "cyclic-exp_range": (
        {"name": "cyclic", "mode": "exp_range", "gamma": 0.95, "half_cycle_epochs": 1, "base_lr": 0.02},
        lambda o: cyclic(o, base_lr=0.02, mode="exp_range", gamma=0.95),
    ),
    "cyclic-warmup": (
        {"name": "cyclic", "half_cycle_epochs": 1, "warmup_steps": 7},
        lambda o: warm(o, 7, cyclic(o)),
    ),
    "onecycle": ({"name": "onecycle"}, lambda o: lr_scheduler.OneCycleLR(o, max_lr=LR, total_steps=N, cycle_momentum=False)),
    "onecycle-warmup": (
        {"name": "onecycle", "warmup_epochs": 1},
        lambda o: warm(o, STEPS, lr_scheduler.OneCycleLR(o, max_lr=LR, total_steps=N - STEPS, cycle_momentum=False)),
    ),
    "cosine-per-step-warmup": (
        {"name": "cosine", "interval": "step", "warmup_steps": 4},
        lambda o: warm(o, 4, cosine(o, N - 4)),
    ),
    "cosine_restarts-per-step": (
        {"name": "cosine_restarts", "interval": "step", "restart_epochs": 2, "restart_mult": 2},
        lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2 * STEPS, T_mult=2, eta_min=1e-6),
    ),
}
EPOCH_CASES = {
    "cosine": ({"name": "cosine"}, lambda o: cosine(o, EPOCHS)),
    "cosine_restarts": (
        {"name": "cosine_restarts", "restart_epochs": 2},
        lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, eta_min=1e-6),
    ),
    "step": ({"name": "step", "step_epochs": 2, "step_gamma": 0.5}, lambda o: lr_scheduler.StepLR(o, step_size=2, gamma=0.5)),
    "constant": ({"name": "constant"}, lambda o: lr_scheduler.ConstantLR(o, factor=1.0, total_iters=0)),
}


@pytest.mark.parametrize("case", CASES)
def test_per_step_schedules_match_torch(case):
    spec, build = CASES[case]
    assert ours(spec) == pytest.approx(torch_per_step(build), rel=1e-12)


@pytest.mark.parametrize("case", EPOCH_CASES)
def test_per_epoch_schedules_match_torch(case):
    spec, build = EPOCH_CASES[case]
    assert ours(spec) == pytest.approx(torch_per_epoch(build), rel=1e-12)


WARMUP_EPOCH_CASES = {
    "cosine-warmup": ({"name": "cosine", "warmup_epochs": 2}, 2, lambda o: cosine(o, EPOCHS - 2)),
    "step-warmup": ({"name": "step", "step_epochs": 2, "warmup_epochs": 1}, 1, lambda o: lr_scheduler.StepLR(o, step_size=2, gamma=0.1)),
}


@pytest.mark.parametrize("case", WARMUP_EPOCH_CASES)
def test_warmup_epochs_ramp_per_step_before_a_per_epoch_schedule(case):
    """warmup_epochs: 1 is STEPS optimizer steps of a linear ramp, not one epoch at 1% of the lr."""
    spec, warmup_epochs, build = WARMUP_EPOCH_CASES[case]
    lrs = ours(spec)
    ramp = [LR * (0.01 + 0.99 * i / (warmup_epochs * STEPS)) for i in range(warmup_epochs * STEPS)]
    assert lrs[: warmup_epochs * STEPS] == pytest.approx(ramp, rel=1e-9)
    assert lrs[warmup_epochs * STEPS] == pytest.approx(LR)  # the schedule starts from the full lr
    assert lrs == pytest.approx(torch_warmup_steps_then_epochs(warmup_epochs, build), rel=1e-12)


def test_plateau_matches_torch_on_the_same_metrics_with_warmup():
    metrics = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    lrs = ours({"name": "plateau", "patience": 1, "factor": 0.5, "warmup_epochs": 1}, metrics)
    plateau = lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="max", factor=0.5, patience=1, min_lr=1e-6)  # noqa: E731
    assert lrs == pytest.approx(torch_warmup_steps_then_epochs(1, plateau, metrics))
    assert lrs[1] > lrs[0] and lrs[-1] < LR  # it ramped within the first epoch, and it did reduce


def test_plateau_with_warmup_in_steps():
    lrs = ours({"name": "plateau", "warmup_steps": 3, "patience": 100})
    assert lrs[0] == pytest.approx(LR * 0.01) and lrs[3:] == pytest.approx([LR] * (N - 3))


def test_schedule_state_round_trips():
    opt = optimizer()
    spec = ScheduleSpec(name="cyclic", mode="triangular2", half_cycle_epochs=1, warmup_steps=3)
    a = LRSchedule(opt, spec, LR, EPOCHS, STEPS, True)
    for _ in range(11):
        opt.step()
        a.after_batch()
    opt2 = optimizer()
    b = LRSchedule(opt2, spec, LR, EPOCHS, STEPS, True)
    opt2.load_state_dict(opt.state_dict())
    b.load_state_dict(a.state_dict())
    for _ in range(9):
        opt.step()
        a.after_batch()
        opt2.step()
        b.after_batch()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


@pytest.mark.parametrize(
    "train, message",
    [
        ({"schedule": {"name": "cosin"}}, "unknown schedule 'cosin'; valid: plateau, constant, cyclic, cosine"),
        ({"optimizer": "adamax"}, "key 'train.optimizer'.*'adam', 'adamw' or 'sgd'"),
        ({"epochs": 10, "stages": [{"epochs": 3}, {"epochs": 4}]}, "stages add up to 7 epochs but train.epochs is 10"),
        ({"stages": [{"epochs": 3, "image_size": 0}]}, r"train.stages.0.image_size"),
        ({"stages": [{"epochs": 3, "aug_p": [0.2, 1.5]}]}, r"aug_p must be within \[0, 1\]"),
    ],
)
def test_bad_recipes_fail_at_config_time(tmp_path, train, message):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"train": train}))
    with pytest.raises(SolverError, match=message):
        load_experiment_config(path)


def test_mixup_needs_an_even_batch():
    with pytest.raises(ValueError, match="batch_size must be even"):
        ExperimentConfig.model_validate({"data": {"batch_size": 7}, "train": {"mixup_alpha": 0.2}})


def test_warmup_longer_than_the_stage_is_an_error():
    with pytest.raises(SolverError, match="warmup .* is as long as the stage"):
        LRSchedule(optimizer(), ScheduleSpec(name="cosine", warmup_epochs=EPOCHS), LR, EPOCHS, STEPS, True)
    with pytest.raises(SolverError, match="give warmup_epochs, or set interval: step"):
        LRSchedule(optimizer(), ScheduleSpec(name="cosine", warmup_steps=3), LR, EPOCHS, STEPS, True)
