"""Prediction, TTA and embeddings run the model as training did: train.amp (autocast) and train.channels_last.

On CUDA that is AMP's speed; on the CPU amp=auto is off, and train.amp=bf16 set explicitly autocasts there too,
which lets the CPU check that the settings reach the forward.
"""

import numpy as np
import pytest
import timm
import torch

from solver.competition.contract import Competition
from solver.config.experiment import ExperimentConfig
from solver.nn.data import ImageDataset, build_transform
from solver.nn.runtime import inference_settings
from solver.predict.embeddings import embeddings
from solver.predict.run import predict_experiment
from solver.predict.tta import ViewsDataset, embed, predict_tta
from solver.submit import package
from solver.submit.package import build_package, predict_package
from solver.train import experiment
from solver.train.experiment import load_experiment
from solver.train.run import train_experiment
from tests.synthetic import make_competition

EXPERIMENT = {
    "model": {"name": "test_resnet"},
    "data": {"image_size": 32, "batch_size": 8, "num_workers": 0},
    "augment": {"train": [{"name": "HorizontalFlip", "p": 0.5}]},
    "train": {"epochs": 1, "lr": 3e-3, "early_stopping_patience": None, "amp": "bf16", "channels_last": True},
}


def _first_conv(model: torch.nn.Module) -> torch.nn.Module:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_prediction_tta_and_embeddings_use_the_training_amp_and_memory_format(tmp_path, monkeypatch):
    make_competition(tmp_path, n_train=32, n_test=8, experiment=EXPERIMENT)
    train_experiment(tmp_path, "synth", "tiny")
    seen: list[tuple[bool, torch.dtype]] = []  # per forward of the first conv: (input channels_last?, output dtype)
    new_model = experiment.build_model

    def recorded_model(exp, **kwargs):
        model = new_model(exp, **kwargs)
        _first_conv(model).register_forward_hook(
            lambda _m, inp, out: seen.append((inp[0].is_contiguous(memory_format=torch.channels_last), out.dtype))
        )
        return model

    monkeypatch.setattr(experiment, "build_model", recorded_model)
    for run in (lambda: predict_experiment(tmp_path, "synth", "tiny"), lambda: predict_experiment(tmp_path, "synth", "tiny", tta=2)):
        seen.clear()
        run()
        assert seen and set(seen) == {(True, torch.bfloat16)}, set(seen)
    seen.clear()
    embeddings(load_experiment(tmp_path, "synth", "tiny"), torch.device("cpu"))
    assert seen and set(seen) == {(True, torch.bfloat16)}, set(seen)


def test_a_package_predicts_with_the_training_amp_and_memory_format(tmp_path, monkeypatch):
    make_competition(tmp_path, n_train=32, n_test=8, experiment=EXPERIMENT)
    train_experiment(tmp_path, "synth", "tiny")
    package_dir = build_package(Competition.load(tmp_path, "synth"), "tiny", tmp_path / "pkg")
    seen: list[tuple[bool, torch.dtype]] = []
    create = package.create_model

    def recorded_model(*args, **kwargs):
        model = create(*args, **kwargs)
        _first_conv(model).register_forward_hook(
            lambda _m, inp, out: seen.append((inp[0].is_contiguous(memory_format=torch.channels_last), out.dtype))
        )
        return model

    monkeypatch.setattr(package, "create_model", recorded_model)
    predict_package(package_dir, tmp_path / "data/synth", tmp_path / "sub.csv", "cpu")
    assert seen and set(seen) == {(True, torch.bfloat16)}, set(seen)


def test_inference_settings_follow_training():
    spec = ExperimentConfig.model_validate({"model": {"name": "test_resnet"}, "train": {"channels_last": True}}).train
    assert inference_settings(spec, torch.device("cpu")) == (None, True)  # amp auto: off on the CPU
    assert inference_settings(spec.model_copy(update={"amp": "bf16"}), torch.device("cpu")) == (torch.bfloat16, True)


@pytest.mark.parametrize("what", ["tta", "embed"])
def test_channels_last_gives_the_same_numbers_and_bf16_close_ones(what):
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=3).eval()
    cfg = ExperimentConfig.model_validate({"model": {"name": "test_resnet"}, "data": {"image_size": 32}})
    plain = build_transform(cfg, [0.5] * 3, [0.25] * 3, train=False)
    images = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(6)]
    dataset = ImageDataset([f"{i}.png" for i in range(6)], None, plain, images)
    cpu = torch.device("cpu")

    def run(amp=None, channels_last=False):
        if what == "embed":
            return embed(
                model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format), dataset, 4, cpu, 0, "e", amp, channels_last
            )
        views = ViewsDataset(dataset, plain, build_transform(cfg, [0.5] * 3, [0.25] * 3, train=True, augment=[{"name": "HorizontalFlip"}]), 2, 0)
        return predict_tta(model, views, "multiclass", "probabilities", 3, cpu, 0, "t", amp, channels_last)

    fp32 = run()
    np.testing.assert_allclose(run(channels_last=True), fp32, rtol=1e-4, atol=1e-5)
    bf16 = run(amp=torch.bfloat16)
    assert not np.array_equal(bf16, fp32)  # autocast reached the forward
    np.testing.assert_allclose(bf16, fp32, rtol=0.1, atol=0.05)
