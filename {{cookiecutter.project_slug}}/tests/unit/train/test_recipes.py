"""Training switches on the CPU: curriculum, MixUp, accumulation, clipping, EMA, AMP (bf16), curves PNG."""

import pandas as pd

from solver.train.run import train_experiment
from tests.synthetic import make_competition

RECIPE = {
    "model": {"name": "test_resnet"},
    "data": {"image_size": 32, "batch_size": 8},
    "augment": {"train": [{"name": "Affine", "rotate": [-10, 10]}]},
    "train": {
        "lr": 3e-3,
        "schedule": {"name": "cyclic", "half_cycle_epochs": 1, "warmup_steps": 2},
        "stages": [
            {"epochs": 1, "image_size": 24, "aug_p": [0.3, 0.6]},
            {"epochs": 1, "mixup_alpha": 0.4, "continue_schedule": True},
            {"epochs": 1, "aug_p": 0.0, "lr": 3e-4, "schedule": {"name": "constant"}},
        ],
        "accumulation_steps": 2,
        "clip_grad_norm": 1.0,
        "ema_decay": 0.9,
        "amp": "bf16",
        "channels_last": True,
        "early_stopping_patience": None,
    },
}


def test_a_full_recipe_trains_and_logs_every_stage(tmp_path):
    make_competition(tmp_path, experiment=RECIPE)
    score = train_experiment(tmp_path, "synth", "tiny")
    assert score is not None
    fold = tmp_path / "runs/synth/tiny/fold0"
    metrics = pd.read_csv(fold / "metrics.csv")
    assert metrics["stage"].tolist() == [0, 1, 2]
    assert metrics["image_size"].tolist() == [24, 32, 32]
    assert metrics["mixup_alpha"].tolist() == [0, 0.4, 0]
    assert metrics["ema_accuracy"].notna().all()
    assert metrics["lr"].iloc[2] == 3e-4
    assert (fold / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_multilabel_with_mixup_and_cutmix(tmp_path):
    recipe = {**RECIPE, "train": {"epochs": 2, "mixup_alpha": 0.4, "cutmix_alpha": 1.0, "lr": 3e-3, "early_stopping_patience": None}}
    make_competition(tmp_path, task="multilabel", experiment=recipe)
    assert train_experiment(tmp_path, "synth", "tiny") is not None


def test_time_budget_ends_the_run_and_run_name_picks_the_folder(tmp_path):
    make_competition(tmp_path)
    score = train_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=50", "train.time_budget_minutes=0.0001"], run_name="budget")
    assert score is not None and score["source"] == "budget"
    for k in (0, 1):
        assert len(pd.read_csv(tmp_path / f"runs/synth/budget/fold{k}/metrics.csv")) == 1  # stopped after the first epoch
    assert not (tmp_path / "runs/synth/tiny").exists()


def test_a_fold_resumes_under_another_amp_mode():
    """train.device may change between runs of a fold (CPU, bf16 GPU, fp16 GPU): the AMP scaler state must not block resume."""
    import torch

    from solver.competition.metrics import get_metric
    from solver.config.experiment import ExperimentConfig, ModelSpec
    from solver.nn.models import create_model
    from solver.train.loop import Trainer

    def trainer(amp):
        cfg = ExperimentConfig.model_validate({"train": {"amp": amp}})
        return Trainer(
            create_model(ModelSpec(name="test_resnet"), 3, 3), cfg, get_metric("accuracy", "multiclass"), "multiclass", 3, torch.device("cpu"), 32
        )

    trainer("fp16").load_state_dict(trainer("off").state_dict())
    trainer("off").load_state_dict(trainer("fp16").state_dict())


def _small_trainer(train: dict, n_train: int, batch_size: int):
    """A Trainer of a linear model on 3x4x4 inputs, its schedule built, and a loader over n_train random rows."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from solver.competition.metrics import get_metric
    from solver.config.experiment import ExperimentConfig
    from solver.nn.curriculum import make_schedule
    from solver.train.loop import Trainer

    cfg = ExperimentConfig.model_validate({"data": {"batch_size": batch_size}, "train": {"early_stopping_patience": None, **train}})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    trainer = Trainer(model, cfg, get_metric("accuracy", "multiclass"), "multiclass", 3, torch.device("cpu"), n_train)
    trainer.schedule = make_schedule(trainer.optimizer, trainer.segments[0], trainer.n_steps, True)
    x, y = torch.randn(n_train, 3, 4, 4), torch.arange(n_train) % 3
    return trainer, x, y, DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def test_accumulation_weighs_the_last_partial_group_like_a_full_one():
    """10 rows in batches of 4, 4, 2 with accumulation_steps 2: the second optimizer step sees one batch, and its
    gradient is that batch's mean-loss gradient (not half of it)."""
    import torch

    trainer, x, y, loader = _small_trainer({"optimizer": "sgd", "lr": 1e-12, "momentum": 0, "nesterov": False, "accumulation_steps": 2}, 10, 4)
    weight = trainer.model[1].weight
    seen, step = [], trainer.optimizer.step

    def record(*args, **kwargs):
        seen.append(weight.grad.clone())
        return step(*args, **kwargs)

    trainer.optimizer.step = record
    trainer.train_epoch(loader, trainer.epochs[0], "test")
    assert len(seen) == 2
    for rows, grad in ((slice(0, 8), seen[0]), (slice(8, 10), seen[1])):
        trainer.model.zero_grad()
        if rows.start == 0:  # a full group: the mean of its two batches' mean losses
            loss = sum(trainer.loss_fn(trainer.model(x[b : b + 4]), y[b : b + 4]) for b in (0, 4)) / 2
        else:
            loss = trainer.loss_fn(trainer.model(x[rows]), y[rows])
        loss.backward()
        torch.testing.assert_close(grad, weight.grad)


def test_mixup_trains_a_fold_that_is_one_odd_batch():
    """The loader keeps a fold smaller than a batch as one batch (7 rows here): MixUp pairs rows with the batch reversed,
    and timm asserts an even batch."""
    import math

    trainer, _, _, loader = _small_trainer({"mixup_alpha": 0.4, "lr": 1e-3}, 7, 8)
    assert trainer.epochs[0].mixup_alpha == 0.4 and len(loader) == 1
    assert math.isfinite(trainer.train_epoch(loader, trainer.epochs[0], "test"))


def test_select_last_keeps_the_oof_at_chance_on_shuffled_labels(tmp_path):
    """Labels independent of the images: no model beats chance (1/3) on unseen rows. select: best picks each fold's
    epoch and EMA-or-raw weights on that fold's labels, so its OOF rises above chance by selection alone; select: last
    fixes both in advance, so its OOF is an honest estimate."""
    import numpy as np
    import yaml

    n = 150
    recipe = {
        **RECIPE,
        "train": {"epochs": 6, "lr": 3e-3, "schedule": {"name": "cosine"}, "ema_decay": 0.9, "early_stopping_patience": 2, "seed": 3},
    }
    make_competition(tmp_path, n_train=n, experiment=recipe)
    path = tmp_path / "data/synth/train.csv"
    train = pd.read_csv(path)
    train["label"] = np.random.default_rng(1).permutation(train["label"].to_numpy())
    train.to_csv(path, index=False)
    (tmp_path / "synth/configs/last.yaml").write_text(yaml.safe_dump({**recipe, "train": {**recipe["train"], "select": "last"}}))
    best = train_experiment(tmp_path, "synth", "tiny")
    last = train_experiment(tmp_path, "synth", "last")
    chance, band = 1 / 3, 3 * np.sqrt(1 / 3 * 2 / 3 / n)  # three standard errors of an accuracy on n rows
    print(f"shuffled labels, OOF accuracy: select best {best['cv']:.4f}, select last {last['cv']:.4f}, chance {chance:.4f} +- {band:.4f}")
    assert abs(last["cv"] - chance) < band, last["cv"]
    for k in (0, 1):
        metrics = pd.read_csv(tmp_path / f"runs/synth/last/fold{k}/metrics.csv")
        assert len(metrics) == 6 and metrics["best"].iloc[-1] == metrics["ema_accuracy"].iloc[-1]  # every epoch ran; the last EMA kept


def test_select_last_refuses_a_schedule_driven_by_the_validation_fold():
    import pytest

    from solver.config.experiment import ExperimentConfig

    with pytest.raises(ValueError, match="train.select: last keeps the validation fold out .* schedule 'plateau'"):
        ExperimentConfig.model_validate({"train": {"select": "last"}})
    assert ExperimentConfig.model_validate({"train": {"select": "last", "schedule": {"name": "cosine"}}}).train.select == "last"
