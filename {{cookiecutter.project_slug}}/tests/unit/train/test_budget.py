"""make baseline's budget: the probe's cost model, the curriculum compressed by one factor, the overrides that train it."""

import pytest
import torch

from solver.train.budget import Probe, StageCost, compressed_overrides, fit_epochs, probe, recipe_epochs
from solver.train.experiment import load_experiment
from solver.train.run import train_experiment
from tests.synthetic import TINY_EXPERIMENT, make_competition

CURRICULUM = {
    **TINY_EXPERIMENT,
    "train": {
        "lr": 3e-3,
        "early_stopping_patience": None,
        "schedule": {"name": "cosine", "warmup_epochs": 2},
        "stages": [
            {"epochs": 4, "image_size": 16, "aug_p": [0.2, 0.6]},
            {"epochs": 10, "aug_p": 0.8, "mixup_alpha": 0.2, "continue_schedule": True},
            {"epochs": 2, "aug_p": 0.0, "lr": 3e-4, "schedule": {"name": "cosine"}},
        ],
    },
}


def fake_probe(epoch_seconds: list[float]) -> Probe:
    """A probe whose epochs cost exactly these seconds per stage (one batch, nothing else)."""
    stages = [StageCost(train_batch=s, epoch_fixed=0.0, eval_image=0.0) for s in epoch_seconds]
    return Probe(stages=stages, fold_setup=0.0, batches=1, n_valid=10, n_test=10, evals_per_epoch=1, seconds=1.0)


def test_a_recipe_that_fits_is_kept_as_written():
    assert fit_epochs([4, 10, 2], fake_probe([1, 2, 2]), seconds=5 * 30, n_folds=5) == [4, 10, 2]


def test_every_stage_is_scaled_and_keeps_an_epoch():
    cost = fake_probe([1, 2, 2])
    epochs = fit_epochs([4, 10, 2], cost, seconds=5 * 14, n_folds=5)  # 14 s a fold where the recipe needs 28
    assert cost.fold_seconds(epochs) <= 14 and all(n >= 1 for n in epochs) and epochs[-1] >= 1
    assert epochs[1] > epochs[0] >= 1 and sum(epochs) < 16
    assert cost.fold_seconds(epochs) > 14 - 2  # the time left by rounding down went back into the stages
    assert fit_epochs([4, 10, 2], cost, seconds=5 * 5, n_folds=5) == [1, 1, 1]


def test_one_epoch_per_stage_not_fitting_is_none():
    assert fit_epochs([4, 10, 2], fake_probe([1, 2, 2]), seconds=5 * 4.9, n_folds=5) is None


def test_the_cost_model_counts_ema_evaluations_and_predictions():
    stage = StageCost(train_batch=0.5, epoch_fixed=1.0, eval_image=0.01)
    cost = Probe(stages=[stage], fold_setup=2.0, batches=10, n_valid=100, n_test=50, evals_per_epoch=2, seconds=0.0)
    assert cost.epoch_seconds(0) == pytest.approx(10 * 0.5 + 1.0 + 2 * 100 * 0.01)
    assert cost.fold_seconds([3]) == pytest.approx(2.0 + 3 * 8.0 + 150 * 0.01)


def test_compressed_overrides_train_the_compressed_curriculum(tmp_path):
    make_competition(tmp_path, experiment=CURRICULUM)
    exp = load_experiment(tmp_path, "synth", "tiny", training=True)
    assert recipe_epochs(exp) == [4, 10, 2]
    overrides = compressed_overrides(exp, [1, 2, 1])
    squeezed = load_experiment(tmp_path, "synth", "tiny", overrides, run_name="tiny_1min")
    stages = squeezed.cfg.train.stages
    assert [s.epochs for s in stages] == [1, 2, 1] and squeezed.cfg.train.epochs == 4
    assert stages[0].image_size == 16 and stages[1].mixup_alpha == 0.2 and stages[1].continue_schedule and stages[2].lr == 3e-4
    assert squeezed.cfg.train.schedule.warmup_epochs == 0  # 2 epochs of warmup scaled by 4/16, in whole epochs
    score = train_experiment(tmp_path, "synth", "tiny", overrides=overrides, run_name="tiny_1min")
    assert score is not None and (tmp_path / "runs/synth/tiny_1min/fold0/metrics.csv").read_text().count("\n") == 5


def test_the_probe_measures_every_stage_on_this_machine(tmp_path):
    make_competition(tmp_path, experiment=CURRICULUM)
    exp = load_experiment(tmp_path, "synth", "tiny", training=True)
    measured = probe(exp, torch.device("cpu"))
    assert len(measured.stages) == 3 and all(s.train_batch > 0 and s.eval_image > 0 for s in measured.stages)
    assert measured.batches == 3 and measured.n_valid == 24 and measured.n_test == 16  # 24 rows at batch 8
    assert not (tmp_path / "runs/synth/tiny").exists()  # the probe trains nothing that stays
