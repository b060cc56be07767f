"""N-channel images, also split into one grayscale file per channel (Human Protein Atlas: red, green, blue, yellow)."""

import cv2
import numpy as np
import pandas as pd
import pytest
import timm
import torch
import yaml
from timm.models import adapt_input_conv

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.competition.images import load_images, read_sample
from solver.config.experiment import ExperimentConfig
from solver.nn.data import ImageDataset, build_transform, check_augmentations, normalization
from solver.train import experiment
from solver.train import run as train_run
from solver.train.experiment import load_experiment
from solver.train.run import train_experiment
from tests.synthetic import make_competition

HPA = ["{id}_red.png", "{id}_green.png", "{id}_blue.png", "{id}_yellow.png"]
FIRST_CONV = "conv1.0.weight"  # resnet10t's deep stem starts here (its pretrained_cfg first_conv)


def _hpa(tmp_path, **kwargs):
    return make_competition(tmp_path, task="multilabel", channel_files=HPA, n_train=32, n_test=8, **kwargs)


def _save_rgb_weights(tmp_path, suffix: str):
    """A 3-channel ImageNet-shaped resnet10t checkpoint, as a user would download it."""
    torch.manual_seed(1)
    state = timm.create_model("resnet10t", pretrained=False, num_classes=1000, in_chans=3).state_dict()
    path = tmp_path / "weights" / f"resnet10t{suffix}"
    path.parent.mkdir()
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return state, path


def _experiment(tmp_path, weights: str, augment=None):
    cfg = {
        "model": {"name": "resnet10t", "weights": weights},
        "data": {"image_size": 32, "batch_size": 8},
        "augment": {
            "train": augment if augment is not None else [{"name": "HorizontalFlip", "p": 0.5}, {"name": "RandomBrightnessContrast", "p": 0.5}]
        },
        "train": {"epochs": 1, "lr": 1e-3, "early_stopping_patience": None},
    }
    (tmp_path / "synth/configs/rgby.yaml").write_text(yaml.safe_dump(cfg))


def test_image_files_one_per_channel_and_read_sample_stacks_them_in_order(tmp_path):
    _hpa(tmp_path)
    comp = Competition.load(tmp_path, "synth")
    files = comp.image_files("train", "s001")
    assert [f.name for f in files] == ["s001_red.png", "s001_green.png", "s001_blue.png", "s001_yellow.png"]
    assert all(f.parent == tmp_path / "data/synth/train" for f in files)
    image = read_sample(files)
    assert image.shape == (32, 32, 4) and image.dtype == np.uint8
    for c, f in enumerate(files):
        np.testing.assert_array_equal(image[:, :, c], cv2.imread(str(f), cv2.IMREAD_UNCHANGED))
    # an ordinary competition: one file, read as before
    make_competition(tmp_path / "plain")
    plain = Competition.load(tmp_path / "plain", "synth")
    assert plain.image_files("test", "s050") == [tmp_path / "plain/data/synth/test/s050.png"] == [plain.image_path("test", "s050")]
    assert read_sample(plain.image_files("train", "s000")).shape == (32, 32, 3)


@pytest.mark.parametrize(
    "contract, message",
    [
        ({"image_pattern": "{id}.png", "image_channels": HPA}, "image_pattern and image_channels: set one, not both"),
        ({"image_channels": []}, "image_channels: list at least one"),
        ({"image_channels": ["red.png", "{id}_green.png"]}, r"image_channels\[0\]: 'red.png' must contain \{id\}"),
        ({"image_channels": ["{id}_{x}.png"]}, r"image_channels\[0\]: .* must contain \{id\} and no other braces"),
        ({"image_channels": ["{id}_r.png", "{id}_r.png"]}, "'{id}_r.png' is listed twice"),
    ],
)
def test_contract_rejects_bad_channel_patterns(tmp_path, contract, message):
    make_competition(tmp_path, n_train=4, n_test=2, **contract)
    with pytest.raises(SolverError, match=message) as err:
        Competition.load(tmp_path, "synth")
    assert "competition.yaml" in str(err.value)


def test_missing_channel_file_names_the_file_and_the_sample(tmp_path):
    _hpa(tmp_path)
    (tmp_path / "data/synth/train/s007_yellow.png").unlink()
    with pytest.raises(SolverError, match=r"train\.csv: 1 listed image\(s\) not found, e\.g\. .*train/s007_yellow\.png \(id 's007'\)"):
        load_experiment(tmp_path, "synth", "tiny")


def test_channel_file_with_three_channels_is_refused(tmp_path):
    _hpa(tmp_path)
    bad = tmp_path / "data/synth/train/s000_green.png"
    cv2.imwrite(str(bad), np.zeros((32, 32, 3), np.uint8))
    comp = Competition.load(tmp_path, "synth")
    with pytest.raises(SolverError, match=r"channel file .*s000_green\.png has 3 channels; .* one grayscale channel"):
        read_sample(comp.image_files("train", "s000"))
    with pytest.raises(SolverError, match=r"s000_green\.png has 3 channels"):
        load_experiment(tmp_path, "synth", "tiny")  # the first sample decides the channel count: it fails here, named


@pytest.mark.parametrize("cache", [True, False])
def test_channel_files_of_different_sizes_are_refused(tmp_path, cache):
    _hpa(tmp_path)
    cv2.imwrite(str(tmp_path / "data/synth/train/s005_blue.png"), np.zeros((16, 24), np.uint8))
    comp = Competition.load(tmp_path, "synth")
    message = r"channel file .*s005_blue\.png is 16x24 \(HxW\) but .*s005_red\.png is 32x32"
    with pytest.raises(SolverError, match=message):
        read_sample(comp.image_files("train", "s005"))
    with pytest.raises(SolverError, match=message):  # cached or decoded lazily: the headers are checked before training
        load_experiment(tmp_path, "synth", "tiny", overrides=[f"data.cache_images={cache}"])


def test_cache_and_lazy_reading_give_the_same_four_channels(tmp_path):
    _hpa(tmp_path)
    exp = load_experiment(tmp_path, "synth", "tiny", overrides=["data.cache_images=true"])
    assert exp.in_chans == 4 and exp.train_images[3].shape == (32, 32, 4)
    assert exp.train_paths[3] == Competition.load(tmp_path, "synth").image_files("train", "s003")
    np.testing.assert_array_equal(exp.train_images[3], load_images([exp.train_paths[3]], "x")[0])
    ds = ImageDataset(exp.train_paths, exp.y, build_transform(exp.cfg, exp.mean, exp.std, train=True), channels=4)
    x, y = ds[3]
    assert x.shape == (4, 32, 32) and y.shape == (4,)


def test_colour_transform_on_four_channels_fails_at_load_naming_it(tmp_path):
    _hpa(
        tmp_path,
        experiment={"model": {"name": "test_resnet"}, "augment": {"train": [{"name": "HorizontalFlip"}, {"name": "HueSaturationValue", "p": 0.1}]}},
    )
    with pytest.raises(
        SolverError,
        match=r"augment\.train\[1\] \(HueSaturationValue\): fails on images with 4 channel\(s\) but works on RGB: .*colour transforms need 3-channel",
    ):
        load_experiment(tmp_path, "synth", "tiny")
    geometric_and_intensity = [
        {"name": n} for n in ("HorizontalFlip", "Affine", "RandomBrightnessContrast", "RandomGamma", "GaussNoise", "CoarseDropout")
    ]
    check_augmentations(geometric_and_intensity, "augment.train", 4, 32)  # channel-agnostic: fine
    with pytest.raises(SolverError, match=r"tta\.augment\[0\] \(RandomFog\): fails on images with 1 channel"):
        check_augmentations([{"name": "RandomFog"}], "tta.augment", 1, 32)
    # a failure RGB shares is not about channels (a curriculum stage may use a larger size): left to training
    check_augmentations([{"name": "RandomCrop", "height": 64, "width": 64}], "augment.train", 4, 32)


def test_normalization_fits_the_models_rgb_statistics_to_n_channels():
    rgb_mean, rgb_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    cfg = ExperimentConfig()
    mean, std = normalization(cfg, 4, rgb_mean, rgb_std)  # as adapt_input_conv repeats the RGB filters: R G B R
    assert mean == pytest.approx([0.485, 0.456, 0.406, 0.485]) and std == pytest.approx([0.229, 0.224, 0.225, 0.229])
    mean, std = normalization(cfg, 1, rgb_mean, rgb_std)  # one channel sums the RGB filters: their average
    assert mean == pytest.approx([np.mean(rgb_mean)]) and std == pytest.approx([np.mean(rgb_std)])
    assert normalization(cfg, 3, rgb_mean, rgb_std) == (list(rgb_mean), list(rgb_std))
    own = ExperimentConfig(data={"mean": [0.1, 0.2, 0.3, 0.4], "std": [0.5, 0.5, 0.5, 0.5]})
    assert normalization(own, 4, rgb_mean, rgb_std) == ([0.1, 0.2, 0.3, 0.4], [0.5] * 4)
    with pytest.raises(SolverError, match="data.mean/data.std: need 4 values each .* got 3 and 3"):
        normalization(ExperimentConfig(data={"mean": [0.1, 0.2, 0.3], "std": [0.5] * 3}), 4, rgb_mean, rgb_std)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_three_channel_weights_file_is_the_starting_point_of_a_four_channel_model(tmp_path, suffix):
    _hpa(tmp_path)
    state, _ = _save_rgb_weights(tmp_path, suffix)
    _experiment(tmp_path, f"weights/resnet10t{suffix}")
    exp = load_experiment(tmp_path, "synth", "rgby")
    assert exp.in_chans == 4 and exp.mean == pytest.approx([0.485, 0.456, 0.406, 0.485])
    model = experiment.build_model(exp)
    torch.testing.assert_close(model.state_dict()[FIRST_CONV], adapt_input_conv(4, state[FIRST_CONV]))
    torch.testing.assert_close(model.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])


def test_four_channel_competition_trains_from_a_three_channel_weights_file(tmp_path, monkeypatch):
    _hpa(tmp_path)
    state, _ = _save_rgb_weights(tmp_path, ".pth")
    _experiment(tmp_path, "weights/resnet10t.pth")
    starts = []
    new_model = experiment.build_model

    def recording(exp, starting_weights=True):  # the model each fold starts training from
        model = new_model(exp, starting_weights=starting_weights)
        if starting_weights:  # (prediction builds only the architecture, then loads best.pt)
            starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(train_run, "build_model", recording)  # where training builds each fold's model
    score = train_experiment(tmp_path, "synth", "rgby")
    assert score is not None and np.isfinite(score["cv"])
    run = tmp_path / "runs/synth/rgby"
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    assert oof["id"].tolist() == Competition.load(tmp_path, "synth").read_train()["id"].tolist()
    assert len(pd.read_csv(run / "test.csv")) == 8
    assert len(starts) == 2  # both folds
    expected = adapt_input_conv(4, state[FIRST_CONV])
    for start in starts:
        assert start[FIRST_CONV].shape == (expected.shape[0], 4, *expected.shape[2:])
        torch.testing.assert_close(start[FIRST_CONV], expected)  # the weights file was used, not a random init
    trained = torch.load(run / "fold0/best.pt", map_location="cpu", weights_only=True)["model"][FIRST_CONV]
    assert trained.shape[1] == 4 and not torch.equal(trained, expected)  # and it trained from there
