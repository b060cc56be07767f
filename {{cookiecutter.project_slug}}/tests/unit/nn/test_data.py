import cv2
import numpy as np
import pytest
import torch

from solver.base.errors import SolverError
from solver.competition.images import read_image
from solver.config.experiment import ExperimentConfig
from solver.nn.data import ImageDataset, build_augmentations, build_transform, seed_transform


def test_read_image_gives_hwc_rgb(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    assert read_image(tmp_path / "g.png").shape == (8, 8, 1)
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's order
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    rgb = read_image(tmp_path / "c.png")
    assert rgb[0, 0].tolist() == [0, 0, 255]


def test_augmentations_by_name_with_clear_errors():
    transforms = build_augmentations([{"name": "HorizontalFlip", "p": 1.0}, {"name": "Affine", "rotate": [-5, 5]}])
    assert [type(t).__name__ for t in transforms] == ["HorizontalFlip", "Affine"]
    with pytest.raises(SolverError, match=r"augment.train\[0\]: unknown albumentations transform 'HorizontalFlp'.*HorizontalFlip"):
        build_augmentations([{"name": "HorizontalFlp"}])
    with pytest.raises(SolverError, match=r"augment.train\[0\] \(HorizontalFlip\)"):
        build_augmentations([{"name": "HorizontalFlip", "probability": 1}])


def test_transform_resizes_normalizes_and_is_seeded():
    cfg = ExperimentConfig.model_validate({"data": {"image_size": 16}, "augment": {"train": [{"name": "Affine", "p": 1, "rotate": [-30, 30]}]}})
    image = np.random.default_rng(0).integers(0, 255, (10, 12, 1), dtype=np.uint8)
    eval_tf = build_transform(cfg, [0.5], [0.25], train=False)
    x = eval_tf(image=image)["image"]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32
    a, b = (seed_transform(build_transform(cfg, [0.5], [0.25], train=True), 3) for _ in range(2))
    assert torch.equal(a(image=image)["image"], b(image=image)["image"])


def test_seeded_augmentations_draw_independently():
    # Two flips at p=0.5 must not always fire together (they would with Compose.set_random_seed).
    cfg = ExperimentConfig.model_validate({"data": {"image_size": 4}, "augment": {"train": [{"name": "HorizontalFlip"}, {"name": "VerticalFlip"}]}})
    image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    transform = seed_transform(build_transform(cfg, [0.5], [0.25], train=True), 0)
    outcomes = []
    for _ in range(200):
        x = transform(image=image)["image"][0]
        outcomes.append((bool(x[0, 0] > x[0, -1]), bool(x[0, 0] > x[-1, 0])))  # (flipped left-right, flipped up-down)
    agree = np.mean([h == v for h, v in outcomes])
    assert 0.35 < agree < 0.65


def test_aug_p_zero_turns_augmentations_off():
    cfg = ExperimentConfig.model_validate({"data": {"image_size": 4}, "augment": {"train": [{"name": "HorizontalFlip", "p": 1.0}]}})
    image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    off = build_transform(cfg, [0.5], [0.25], train=True, aug_p=0.0)(image=image)["image"]
    plain = build_transform(cfg, [0.5], [0.25], train=False)(image=image)["image"]
    assert torch.equal(off, plain)


def test_dataset_yields_tensor_and_target(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cfg = ExperimentConfig.model_validate({"data": {"image_size": 8}})
    ds = ImageDataset([tmp_path / "a.png"], np.array([2]), build_transform(cfg, [0.5] * 3, [0.25] * 3, train=False))
    x, y = ds[0]
    assert x.shape == (3, 8, 8) and int(y) == 2
