"""Training switches on the CPU: curriculum, MixUp, accumulation, clipping, EMA, AMP (bf16), curves PNG."""

import pandas as pd

from solver.experiment import train_experiment
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

    from solver.config import ExperimentConfig, ModelSpec
    from solver.metrics import get_metric
    from solver.models import create_model
    from solver.trainer import Trainer

    def trainer(amp):
        cfg = ExperimentConfig.model_validate({"train": {"amp": amp}})
        return Trainer(
            create_model(ModelSpec(name="test_resnet"), 3, 3), cfg, get_metric("accuracy", "multiclass"), "multiclass", 3, torch.device("cpu"), 32
        )

    trainer("fp16").load_state_dict(trainer("off").state_dict())
    trainer("off").load_state_dict(trainer("fp16").state_dict())
