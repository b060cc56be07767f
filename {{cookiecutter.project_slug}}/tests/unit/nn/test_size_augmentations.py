"""Crops, pads and resizes in a curriculum: their size follows each stage, every pipeline ends at the stage's size,
and a size that cannot fit stops the experiment when it loads."""

import numpy as np
import pandas as pd
import pytest

from solver.base.errors import SolverError
from solver.config.experiment import ExperimentConfig
from solver.nn.data import build_augmentations, build_transform, seed_transform
from solver.predict.run import predict_experiment
from solver.train.experiment import load_experiment
from solver.train.run import train_experiment
from tests.synthetic import make_competition

# Each kind of size-changing transform with its size left out (or `auto`), and the attributes that must follow the stage.
FOLLOWING = {
    "RandomResizedCrop": ({}, {"size": (24, 24)}),
    "RandomResizedCrop-auto": ({"size": "auto"}, {"size": (24, 24)}),
    "RandomSizedCrop": ({"min_max_height": [8, 20]}, {"size": (24, 24)}),
    "RandomCrop": ({}, {"height": 24, "width": 24}),
    "RandomSizedBBoxSafeCrop": ({"erosion_rate": 0.1}, {"height": 24, "width": 24}),
    "RandomCrop-auto": ({"height": "auto", "width": "auto"}, {"height": 24, "width": 24}),
    "CenterCrop": ({}, {"height": 24, "width": 24}),
    "Resize": ({}, {"height": 24, "width": 24}),
    "PadIfNeeded": ({}, {"min_height": 24, "min_width": 24}),
    "LongestMaxSize": ({}, {"max_size": 24}),
    "SmallestMaxSize": ({"max_size": "auto"}, {"max_size": 24}),
}


@pytest.mark.parametrize("case", FOLLOWING)
def test_size_left_out_or_auto_follows_the_stage(case):
    args, expected = FOLLOWING[case]
    (transform,) = build_augmentations([{"name": case.split("-")[0], **args}], image_size=24)
    assert {k: getattr(transform, k) for k in expected} == expected


def test_a_size_given_is_kept_and_divisors_replace_the_stage_size():
    crop, pad, longest = build_augmentations(
        [
            {"name": "RandomCrop", "height": 16, "width": "auto"},
            {"name": "PadIfNeeded", "min_height": None, "min_width": None, "pad_height_divisor": 8, "pad_width_divisor": 8},
            {"name": "LongestMaxSize", "max_size_hw": [20, 30]},
        ],
        image_size=24,
    )
    assert (crop.height, crop.width) == (16, 24)
    assert (pad.min_height, pad.pad_height_divisor) == (None, 8)
    assert (longest.max_size, longest.max_size_hw) == (None, (20, 30))


def test_argument_errors_are_one_line_and_name_the_size_argument_of_albumentations_2():
    with pytest.raises(SolverError, match=r"augment\.train\[0\] \(RandomResizedCrop\): .*'height, width'.*takes size: \[height, width\]"):
        build_augmentations([{"name": "RandomResizedCrop", "height": 32, "width": 32}], image_size=32)
    with pytest.raises(SolverError, match=r"size: .*\(got 32\); it takes size: \[height, width\]"):
        build_augmentations([{"name": "RandomResizedCrop", "size": 32}], image_size=32)
    with pytest.raises(SolverError, match=r"tta\.augment\[1\] \(RandomSizedCrop\): min_max_height: Field required$") as err:
        build_augmentations([{"name": "HorizontalFlip"}, {"name": "RandomSizedCrop"}], "tta.augment", image_size=32)
    assert "\n" not in str(err.value)


PIPELINES = {
    "RandomResizedCrop": [{"name": "RandomResizedCrop"}],
    "RandomResizedCrop-32": [{"name": "RandomResizedCrop", "size": [32, 32]}],  # the crash: 32 and 24 in one batch
    "RandomCrop": [{"name": "HorizontalFlip"}, {"name": "RandomCrop"}],
    "RandomCrop-smaller": [{"name": "RandomCrop", "height": 12, "width": 12}],
    "CenterCrop": [{"name": "CenterCrop"}],
    "RandomSizedCrop": [{"name": "RandomSizedCrop", "min_max_height": [8, 16]}],
    "LongestMaxSize": [{"name": "LongestMaxSize"}],
    "LongestMaxSize+PadIfNeeded": [{"name": "LongestMaxSize"}, {"name": "PadIfNeeded"}],
    "SmallestMaxSize+CenterCrop": [{"name": "SmallestMaxSize"}, {"name": "CenterCrop"}],
    "PadIfNeeded-larger": [{"name": "PadIfNeeded", "min_height": 40, "min_width": 40}],
    "CropAndPad": [{"name": "CropAndPad", "px": [-3, 5], "keep_size": False}],
    "Affine-fit_output": [{"name": "Affine", "rotate": [30, 40], "fit_output": True}],
}


@pytest.mark.parametrize("case", PIPELINES)
@pytest.mark.parametrize("image_size", [16, 24])
def test_every_pipeline_ends_at_exactly_the_stage_size(case, image_size):
    cfg = ExperimentConfig.model_validate({"data": {"image_size": 32}, "augment": {"train": [{**spec, "p": 1.0} for spec in PIPELINES[case]]}})
    rng = np.random.default_rng(0)
    for h, w in [(20, 50), (64, 40), (24, 24), (9, 9)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for aug_p in (1.0, 0.5):
            transform = seed_transform(build_transform(cfg, [0.5] * 3, [0.25] * 3, train=True, image_size=image_size, aug_p=aug_p), 0)
            for _ in range(4):
                assert transform(image=image)["image"].shape == (3, image_size, image_size)
        assert build_transform(cfg, [0.5] * 3, [0.25] * 3, train=False, image_size=image_size)(image=image)["image"].shape == (
            3,
            image_size,
            image_size,
        )


def _pixels(transform, image):
    """The pipeline's output back in 0..255 (it was normalized with mean 0, std 1)."""
    return np.rint(transform(image=image)["image"].numpy().transpose(1, 2, 0) * 255).astype(int)


def test_random_resized_crop_samples_the_original_image_and_random_crop_the_resized_one():
    # A 64x64 original with every pixel distinct; the stage is 16. A RandomResizedCrop of 1/16 of the area at
    # aspect 1 cuts a 16x16 window of the ORIGINAL (no resampling), not a 4x4 one of the image resized to 16.
    original = np.arange(64 * 64 * 3, dtype=np.int64).reshape(64, 64, 3) % 251
    image = original.astype(np.uint8)
    windows = {original[r : r + 16, c : c + 16].tobytes() for r in range(49) for c in range(49)}
    rrc = ExperimentConfig.model_validate({"augment": {"train": [{"name": "RandomResizedCrop", "scale": [1 / 16, 1 / 16], "ratio": [1, 1], "p": 1}]}})
    out = _pixels(seed_transform(build_transform(rrc, [0.0] * 3, [1.0] * 3, train=True, image_size=16), 0), image)
    assert out.shape == (16, 16, 3) and out.tobytes() in windows
    # A RandomCrop of the stage size cuts the image resized to the stage size: the whole of it, the plain view.
    crop = ExperimentConfig.model_validate({"augment": {"train": [{"name": "RandomCrop", "p": 1}]}})
    plain = _pixels(build_transform(crop, [0.0] * 3, [1.0] * 3, train=False, image_size=16), image)
    np.testing.assert_array_equal(_pixels(build_transform(crop, [0.0] * 3, [1.0] * 3, train=True, image_size=16), image), plain)


def _stages_experiment(augment: list[dict], tta_augment: list[dict] | None = None) -> dict:
    return {
        "model": {"name": "test_resnet"},
        "data": {"image_size": 32, "batch_size": 8},
        "augment": {"train": augment},
        "tta": {"augment": tta_augment},
        "train": {
            "lr": 3e-3,
            "early_stopping_patience": None,
            "stages": [{"epochs": 1, "image_size": 24}, {"epochs": 1}, {"epochs": 1, "aug_p": 0.0}],
        },
    }


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_random_resized_crop_in_a_curriculum_at_two_sizes_trains_and_predicts_with_tta(tmp_path, task):
    augment = [{"name": "RandomResizedCrop", "scale": [0.5, 1.0]}, {"name": "HorizontalFlip"}]
    make_competition(tmp_path, task=task, n_train=32, n_test=8, size=40, experiment=_stages_experiment(augment))
    score = train_experiment(tmp_path, "synth", "tiny")
    assert np.isfinite(score["cv"])
    run = tmp_path / "runs/synth/tiny"
    for k in (0, 1):
        metrics = pd.read_csv(run / f"fold{k}/metrics.csv")
        assert metrics["image_size"].tolist() == [24, 32, 32]
    tta = predict_experiment(tmp_path, "synth", "tiny", tta=2)
    assert tta["source"] == "tiny/tta2"
    probs = pd.read_csv(run / "tta2/test.csv").iloc[:, 1:].to_numpy()
    assert probs.shape == (8, 3 if task == "multiclass" else 4) and np.isfinite(probs).all()


def test_crop_larger_than_a_stage_fails_when_the_experiment_loads(tmp_path):
    augment = [{"name": "HorizontalFlip"}, {"name": "RandomCrop", "height": 28, "width": 28}]
    make_competition(tmp_path, n_train=16, n_test=4, experiment=_stages_experiment(augment))
    message = r"augment\.train\[1\] \(RandomCrop\) cannot run at stage 0 \(image_size 24\).*leave its size out"
    with pytest.raises(SolverError, match=message):
        load_experiment(tmp_path, "synth", "tiny")
    with pytest.raises(SolverError, match=message):
        train_experiment(tmp_path, "synth", "tiny")
    assert [p.name for p in (tmp_path / "runs/synth").iterdir()] == ["folds.csv"]  # the competition's folds, made on first use; no run


def test_tta_crop_larger_than_a_stage_fails_when_the_experiment_loads(tmp_path):
    # TTA views run at the checkpoint's size, which can be any stage's, the no-augmentation one included.
    experiment = _stages_experiment([{"name": "HorizontalFlip"}], tta_augment=[{"name": "CenterCrop", "height": 30, "width": 30}])
    experiment["train"]["stages"] = [{"epochs": 1}, {"epochs": 1, "image_size": 28, "aug_p": 0.0}]
    make_competition(tmp_path, n_train=16, n_test=4, experiment=experiment)
    with pytest.raises(SolverError, match=r"tta\.augment\[0\] \(CenterCrop\) cannot run at stage 1 \(image_size 28\)"):
        predict_experiment(tmp_path, "synth", "tiny", tta=2)
    assert not (tmp_path / "runs/synth/tiny").exists()
