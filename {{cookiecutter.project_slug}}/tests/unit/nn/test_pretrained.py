"""model.pretrained: timm's pretrained weights through the Hugging Face hub cache, offline, from a cache folder
written here (the layout huggingface_hub reads: refs/main, snapshots/<commit>/, blobs/<sha256>)."""

import copy
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import huggingface_hub.constants
import pandas as pd
import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file
from timm.models import adapt_input_conv

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.config.experiment import ModelSpec, load_experiment_config
from solver.nn.models import create_model
from solver.predict.embeddings import embeddings
from solver.predict.run import predict_experiment
from solver.submit.package import build_package, predict_package
from solver.submit.submission import make_submission
from solver.train.experiment import load_experiment
from solver.train.run import train_experiment
from tests.conftest import solver_command
from tests.synthetic import TINY_EXPERIMENT, make_competition

MODEL = "test_resnet.r160_in1k"  # a tiny timm model whose pretrained tag lives on the hub (timm/test_resnet.r160_in1k)


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face home, offline. huggingface_hub reads these variables once, at import: patch its constants too."""
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return home


def cache_weights(hf_home: Path, name: str = MODEL) -> dict[str, torch.Tensor]:
    """Write weights of `name` (made here from scratch, seeded) as the hub cache holds a downloaded model.safetensors."""
    torch.manual_seed(123)
    state = {k: v.contiguous() for k, v in timm.create_model(name).state_dict().items()}
    repo = hf_home / "hub" / ("models--" + timm.models.get_pretrained_cfg(name).hf_hub_id.replace("/", "--"))
    commit = hashlib.sha1(name.encode()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    staged = repo / "blobs" / "staged"
    save_file(state, str(staged))
    blob = staged.rename(repo / "blobs" / hashlib.sha256(staged.read_bytes()).hexdigest())
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return state


def pretrained_experiment(**model) -> dict:
    experiment = copy.deepcopy(TINY_EXPERIMENT)
    experiment["model"] = {"name": MODEL, "pretrained": True, **model}
    return experiment


def test_weights_are_the_cached_files_with_head_and_first_conv_adapted(hf_home):
    cached = cache_weights(hf_home)
    same = create_model(ModelSpec(name=MODEL, pretrained=True), num_classes=1000, in_chans=3).state_dict()
    assert same.keys() == cached.keys() and all(torch.equal(same[k], cached[k]) for k in cached)

    adapted = create_model(ModelSpec(name=MODEL, pretrained=True), num_classes=4, in_chans=1).state_dict()
    cfg = timm.models.get_pretrained_cfg(MODEL)
    first_conv, head = f"{cfg.first_conv}.weight", (f"{cfg.classifier}.weight", f"{cfg.classifier}.bias")
    assert torch.equal(adapted[first_conv], adapt_input_conv(1, cached[first_conv]))  # as timm adapts it
    assert adapted[head[0]].shape == (4, cached[head[0]].shape[1])  # a new head for 4 classes
    assert all(torch.equal(adapted[k], cached[k]) for k in cached if k != first_conv and k not in head)


def test_not_in_the_cache_offline_is_one_line_with_the_three_ways_out(hf_home):
    with pytest.raises(SolverError) as err:
        create_model(ModelSpec(name=MODEL, pretrained=True), num_classes=3, in_chans=3)
    message = str(err.value)
    assert "\n" not in message
    assert f"the pretrained weights of {MODEL} are not in the Hugging Face cache {hf_home / 'hub'} (HF_HUB_OFFLINE is set)" in message
    assert f"python -c \"import timm; timm.create_model('{MODEL}', pretrained=True)\"" in message
    assert f"hf download timm/{MODEL}" in message
    assert "model.weights: <a local weights file>" in message and "model.pretrained: false" in message


def test_training_from_cached_weights_offline_uses_their_normalization(tmp_path, hf_home):
    cache_weights(hf_home)
    make_competition(tmp_path, experiment=pretrained_experiment())
    exp = load_experiment(tmp_path, "synth", "tiny")
    cfg = timm.models.get_pretrained_cfg(MODEL)
    assert (exp.mean, exp.std) == (list(cfg.mean), list(cfg.std))
    overridden = load_experiment(tmp_path, "synth", "tiny", overrides=["data.mean=[0.1,0.2,0.3]", "data.std=[0.3,0.3,0.3]"])
    assert (overridden.mean, overridden.std) == ([0.1, 0.2, 0.3], [0.3, 0.3, 0.3])  # data.mean/std still win
    train_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1"])
    assert (tmp_path / "runs/synth/tiny/score.json").is_file()


@pytest.mark.parametrize(
    "model, message",
    [
        # an architecture timm has no weights for: the related ones that have weights are named
        (
            {"name": "coatnet_0_224"},
            r"model.pretrained: timm has no pretrained weights for .coatnet_0_224.; related models with weights: coatnet_0_rw_224.sw_in1k \(or",
        ),
        # a tag that does not exist: the tags that do are named
        ({"name": "resnet18.foo"}, r"model.name: timm has no tag 'foo' for resnet18; tags with weights: resnet18.a1_in1k, resnet18.a2_in1k"),
        # both starts at once
        ({"weights": "start.pth"}, r"pretrained and weights are both set: start from timm's pretrained weights or from your file, not both"),
    ],
)
def test_bad_pretrained_input_is_one_line_before_anything_is_written(tmp_path, hf_home, model, message):
    make_competition(tmp_path, experiment=pretrained_experiment(**model))
    with pytest.raises(SolverError, match=message):
        train_experiment(tmp_path, "synth", "tiny")
    assert not (tmp_path / "runs/synth/tiny").exists()  # (the folds file, made once, may be there)


def test_train_without_cached_weights_is_an_error_line(tmp_path, hf_home, repo):
    make_competition(tmp_path, experiment=pretrained_experiment())
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    command = solver_command("train", "--root", str(tmp_path), "--comp", "synth", "--exp", "tiny")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # (progress bars come before it)
    assert len(errors) == 1
    assert errors[0].startswith(f"error: model.pretrained: the pretrained weights of {MODEL} are not in the Hugging Face cache {hf_home / 'hub'}")
    assert not (tmp_path / "runs/synth/tiny").exists()


def test_an_unknown_tag_is_refused_from_scratch_too(tmp_path):
    with pytest.raises(SolverError, match="model.name: timm has no tag 'foo' for resnet18"):
        create_model(ModelSpec(name="resnet18.foo"), num_classes=3, in_chans=3)


def test_pretrained_key_is_validated_with_the_experiment(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: {name: resnet18.a1_in1k, pretrained: true}\n")
    assert load_experiment_config(path).model.pretrained is True
    path.write_text("model: {name: resnet18.a1_in1k, pretrained: true, weights: w.pth}\n")
    with pytest.raises(SolverError, match=r"exp.yaml: key 'model': pretrained and weights are both set"):
        load_experiment_config(path)


def test_a_package_of_a_pretrained_model_predicts_without_the_cache(tmp_path, hf_home):
    cache_weights(hf_home)
    make_competition(tmp_path, experiment=pretrained_experiment())
    train_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1"])
    comp = Competition.load(tmp_path, "synth")
    package = build_package(comp, "tiny", tmp_path / "pkg")
    assert yaml.safe_load((package / "config.yaml").read_text())["config"]["model"]["pretrained"] is False
    shutil.rmtree(hf_home)  # the Kaggle machine has no cache, and no network (HF_HUB_OFFLINE=1)
    out = predict_package(package, tmp_path / "data/synth", tmp_path / "sub.csv", "cpu")
    expected = pd.read_csv(make_submission(comp, tmp_path / "runs/synth/tiny", tmp_path / "expected.csv"), dtype=str)
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype=str), expected)


def test_later_stages_of_a_pretrained_experiment_need_no_cache(tmp_path, hf_home):
    """predict, TTA and embeddings load the fold checkpoints, which hold every weight: the cache may be gone."""
    cache_weights(hf_home)
    make_competition(tmp_path, experiment=pretrained_experiment())
    trained = train_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1"])
    shutil.rmtree(hf_home)
    again = predict_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1"])
    assert again["cv"] == trained["cv"]
    assert predict_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1"], tta=2) is not None
    train_embeddings, _ = embeddings(load_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1"]))
    assert len(train_embeddings) == Competition.load(tmp_path, "synth").cfg.n_folds


def test_a_photo_competition_trains_offline_from_cached_weights_with_crops_in_a_curriculum(tmp_path, hf_home):
    """Issue 11's day one, end to end and offline: a multilabel competition of 48 px photos, fine-tuned from cached
    pretrained weights with RandomResizedCrop (its size left out) in a curriculum at two sizes, then TTA, a validated
    submission, and a package that predicts with the cache gone."""
    cache_weights(hf_home)
    experiment = pretrained_experiment()
    experiment["data"] = {"image_size": 32, "batch_size": 8, "num_workers": 0}
    experiment["augment"] = {"train": [{"name": "RandomResizedCrop", "scale": [0.5, 1.0], "p": 1.0}, {"name": "HorizontalFlip", "p": 0.5}]}
    experiment["train"] = {
        "optimizer": "adam",
        "lr": 1e-3,
        "early_stopping_patience": None,
        "stages": [{"epochs": 1, "image_size": 24}, {"epochs": 1}, {"epochs": 1, "aug_p": 0.0}],
    }
    make_competition(tmp_path, task="multilabel", size=48, experiment=experiment)
    score = train_experiment(tmp_path, "synth", "tiny")
    assert score is not None and 0 <= score["cv"] <= 1
    assert predict_experiment(tmp_path, "synth", "tiny", tta=2) is not None
    comp = Competition.load(tmp_path, "synth")
    submission = pd.read_csv(make_submission(comp, tmp_path / "runs/synth/tiny", tmp_path / "sub.csv"))
    assert len(submission) == 16
    package = build_package(comp, "tiny", tmp_path / "pkg")
    shutil.rmtree(hf_home)
    assert len(pd.read_csv(predict_package(package, tmp_path / "data/synth", tmp_path / "pkg_sub.csv", "cpu"))) == 16
