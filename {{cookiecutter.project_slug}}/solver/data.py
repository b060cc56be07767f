"""Images in, tensors out: decoding, optional in-memory cache, albumentations pipelines from config."""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from solver.config import ExperimentConfig
from solver.errors import SolverError, did_you_mean

# OpenCV's own thread pool fights DataLoader workers for the same cores.
cv2.setNumThreads(0)


def read_image(path: Path) -> np.ndarray:
    """HxWxC uint8 in RGB(A) order; grayscale becomes HxWx1."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        reason = "file is missing" if not Path(path).exists() else "not a readable image"
        raise SolverError(f"cannot read image {path}: {reason}")
    if image.dtype != np.uint8:
        raise SolverError(f"image {path} has dtype {image.dtype}; only 8-bit images are supported")
    if image.ndim == 2:
        return image[:, :, None]
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def read_sample(paths: Path | Sequence[Path]) -> np.ndarray:
    """One sample as HxWxC uint8: one image file as read_image reads it, or grayscale channel files stacked in order."""
    paths = sample_files(paths)
    if len(paths) == 1:
        return read_image(paths[0])
    planes = []
    for path in paths:
        plane = read_image(path)
        if plane.shape[2] != 1:
            raise SolverError(f"channel file {path} has {plane.shape[2]} channels; each file listed in image_channels must be one grayscale channel")
        if planes and plane.shape[:2] != planes[0].shape[:2]:
            raise SolverError(
                f"channel file {path} is {plane.shape[0]}x{plane.shape[1]} (HxW) but {paths[0]} is "
                f"{planes[0].shape[0]}x{planes[0].shape[1]}; every channel of a sample must have one size"
            )
        planes.append(plane[:, :, 0])
    return np.ascontiguousarray(np.stack(planes, axis=2))


def sample_files(item: Path | Sequence[Path]) -> list[Path]:
    """A dataset item's files: [the image] or the channel files of a multi-file sample."""
    return [Path(item)] if isinstance(item, str | Path) else [Path(p) for p in item]


def check_images_exist(paths: Sequence[Path | Sequence[Path]], csv_path: Path, ids: Sequence[str] | None = None) -> None:
    """Fail before training when an image (or a channel file) listed in a CSV is missing; name it, its id, and count the rest."""
    missing = [(i, p) for i, item in enumerate(paths) for p in sample_files(item) if not p.is_file()]
    if missing:
        row, path = missing[0]
        sample = f" (id {ids[row]!r})" if ids is not None else ""
        raise SolverError(f"{csv_path}: {len(missing)} listed image(s) not found, e.g. {path}{sample}")


def load_images(paths: Sequence[Path | Sequence[Path]], desc: str) -> list[np.ndarray]:
    """Decode every image once (cache for small data sets); an unreadable file fails here, named."""
    return [read_sample(sample_files(p)) for p in tqdm(paths, desc=desc, leave=False, mininterval=1)]


class ImageDataset(Dataset):
    """Images from paths (or pre-decoded arrays), their targets, and an albumentations transform.

    Each item of paths is one image file or, for a multi-file competition, the list of its channel files.
    Sample i's augmentations draw from their own random stream, seeded by (seed, i): the same images whatever
    the number of DataLoader workers or their order (training sets seed per epoch).
    """

    def __init__(
        self,
        paths: Sequence[Path | Sequence[Path]],
        targets: np.ndarray | None,
        transform: A.Compose,
        images: list[np.ndarray] | None = None,
        channels: int | None = None,
        seed: int = 0,
    ):
        self.paths = list(paths)
        self.targets = targets
        self.transform = transform
        self.images = images
        self.channels = channels  # every image must have this many (the model's in_chans)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> np.ndarray:
        """The decoded image i (HxWxC uint8), before any transform."""
        image = self.images[i] if self.images is not None else read_sample(sample_files(self.paths[i]))
        if self.channels is not None and image.shape[2] != self.channels:
            raise SolverError(
                f"image {self.paths[i]} has {image.shape[2]} channel(s), the others {self.channels}; convert the images to one channel count"
            )
        return image

    def __getitem__(self, i: int):
        x = seed_transform(self.transform, (self.seed << 32) + i)(image=self.image(i))["image"]  # one seed per (seed, i)
        if self.targets is None:
            return x, torch.tensor(-1)
        return x, torch.as_tensor(self.targets[i])


def seed_transform(transform: A.Compose, seed: int) -> A.Compose:
    """Seed a pipeline with ONE shared random stream.

    Compose.set_random_seed(s) gives every child transform its own generator started from s, so all of
    them draw the same numbers (two flips at p=0.5 would always fire together); share one instead.
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return transform


def build_augmentations(specs: list[dict], source: str = "augment.train") -> list[A.BasicTransform]:
    """[{name: HorizontalFlip, p: 0.5}, ...] -> albumentations transforms, each checked by name and arguments."""
    transforms = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        name = spec.pop("name", None)
        where = f"{source}[{i}]"
        cls = getattr(A, str(name), None) if name else None
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
            valid = [n for n in dir(A) if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), A.BasicTransform)]
            raise SolverError(f"{where}: unknown albumentations transform {name!r} ({did_you_mean(str(name), valid)})")
        try:
            # strict=True: an argument the transform does not know is an error, not a warning.
            transforms.append(cls(**spec, strict=True))
        except (TypeError, ValueError) as err:
            raise SolverError(f"{where} ({name}): {err}") from None
    return transforms


def normalization(cfg: ExperimentConfig, in_chans: int, model_mean, model_std) -> tuple[list[float], list[float]]:
    """Per-channel mean/std: the config's, or the model's fitted to in_chans.

    The model's RGB statistics follow what adapt_input_conv does to RGB weights: one channel sums the RGB
    filters, so it gets their average; other counts repeat the RGB filters cyclically (R G B R ...), so the
    statistics repeat the same way and every channel is normalized as the filter it starts from expects.
    """
    mean = list(cfg.data.mean or model_mean)
    std = list(cfg.data.std or model_std)
    if not cfg.data.mean and len(mean) != in_chans:
        if in_chans == 1 or len(mean) != 3:
            mean, std = [float(np.mean(mean))] * in_chans, [float(np.mean(std))] * in_chans
        else:
            mean, std = [float(mean[i % 3]) for i in range(in_chans)], [float(std[i % 3]) for i in range(in_chans)]
    if len(mean) != in_chans or len(std) != in_chans:
        raise SolverError(f"data.mean/data.std: need {in_chans} values each (the images have {in_chans} channels), got {len(mean)} and {len(std)}")
    return mean, std


def check_augmentations(specs: list[dict], source: str, in_chans: int, image_size: int) -> None:
    """Fail at load time, naming the transform, when one cannot take the data's channel count (colour transforms
    need RGB), instead of hours into training: each runs once (p=1) on a dummy N-channel image and, if that fails,
    on an RGB one. Failures that RGB shares (a crop larger than this image size, say) are left to training."""
    if in_chans == 3:
        return
    rng = np.random.default_rng(0)
    for i, transform in enumerate(build_augmentations([{**spec, "p": 1.0} for spec in specs], source)):
        error = _apply_error(transform, rng.integers(0, 256, (image_size, image_size, in_chans), dtype=np.uint8))
        if error is not None and _apply_error(transform, rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)) is None:
            raise SolverError(
                f"{source}[{i}] ({type(transform).__name__}): fails on images with {in_chans} channel(s) but works on RGB: {error}; "
                "colour transforms need 3-channel images: remove it or use a channel-agnostic one"
            )


def _apply_error(transform: A.BasicTransform, image: np.ndarray) -> str | None:
    """None when the transform runs on image, else the first line of its error."""
    try:
        with warnings.catch_warnings():  # only a failure matters here; training shows the warnings
            warnings.simplefilter("ignore")
            A.Compose([transform])(image=image)
    except Exception as err:  # albumentations raises TypeError, ValueError, cv2.error ... for a shape it cannot take
        return (str(err).splitlines() or [type(err).__name__])[0].rstrip(".")
    return None


def build_transform(
    cfg: ExperimentConfig,
    mean: list[float],
    std: list[float],
    train: bool,
    image_size: int | None = None,
    aug_p: float = 1.0,
    augment: list[dict] | None = None,
) -> A.Compose:
    """Resize -> training augmentations (applied together with probability aug_p) -> normalize -> tensor.

    Evaluation gets no augmentation. image_size defaults to data.image_size (a curriculum stage sets its own).
    """
    size = image_size or cfg.data.image_size
    augs = build_augmentations(cfg.augment.train if augment is None else augment) if train and aug_p > 0 else []
    group = [A.Sequential(augs, p=aug_p)] if augs else []
    return A.Compose([A.Resize(size, size), *group, A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()])
