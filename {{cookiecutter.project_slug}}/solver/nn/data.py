"""Images in, tensors out: a dataset over decoded images (or an in-memory cache), albumentations pipelines from config."""

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
from pydantic import ValidationError
from torch.utils.data import Dataset

from solver.base.errors import SolverError, did_you_mean
from solver.competition.images import read_sample, sample_files
from solver.config.experiment import ExperimentConfig

# OpenCV's own thread pool fights DataLoader workers for the same cores.
cv2.setNumThreads(0)


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
        image = self.image(i)  # a bad file fails before any random draw
        x = seed_transform(self.transform, (self.seed << 32) + i)(image=image)["image"]  # one seed per (seed, i)
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


# Size-changing augmentations and the arguments that follow the stage's image size when left out (or `auto`).
# RESIZING ones produce their size from any input; the others cut a region of their input or pad it.
RESIZING = ("RandomResizedCrop", "RandomSizedCrop", "RandomSizedBBoxSafeCrop", "Resize", "LongestMaxSize", "SmallestMaxSize")
CROPS_AND_PADS = (
    "RandomCrop", "CenterCrop", "Crop", "CropAndPad", "PadIfNeeded", "Pad", "RandomCropFromBorders", "CropNonEmptyMaskIfExists",
    "AtLeastOneBBoxRandomCrop", "BBoxSafeRandomCrop", "RandomCropNearBBox",
)  # fmt: skip
STAGE_SIZE_ARGS = {
    "RandomResizedCrop": ("size",),
    "RandomSizedCrop": ("size",),
    "RandomSizedBBoxSafeCrop": ("height", "width"),
    "Resize": ("height", "width"),
    "RandomCrop": ("height", "width"),
    "CenterCrop": ("height", "width"),
    "CropNonEmptyMaskIfExists": ("height", "width"),
    "AtLeastOneBBoxRandomCrop": ("height", "width"),
    "PadIfNeeded": ("min_height", "min_width"),
    "LongestMaxSize": ("max_size",),
    "SmallestMaxSize": ("max_size",),
}
# An argument that replaces a size argument: when it is set, the size is the user's, not the stage's.
_SIZE_ALTERNATIVES = {"min_height": "pad_height_divisor", "min_width": "pad_width_divisor", "max_size": "max_size_hw"}


def follow_stage_size(name: str, spec: dict, image_size: int | None) -> dict:
    """spec with its size arguments set to the stage's image size where they are left out or `auto`."""
    spec = dict(spec)
    for arg in STAGE_SIZE_ARGS.get(name, ()) if image_size else ():
        if spec.get(arg, "auto") == "auto" and spec.get(_SIZE_ALTERNATIVES.get(arg)) is None:
            spec[arg] = (image_size, image_size) if arg == "size" else image_size
    return spec


def build_augmentations(specs: list[dict], source: str = "augment.train", image_size: int | None = None) -> list[A.BasicTransform]:
    """[{name: HorizontalFlip, p: 0.5}, ...] -> albumentations transforms, each checked by name and arguments.

    The size of a crop, pad or resize (STAGE_SIZE_ARGS) left out or `auto` is image_size, the stage's."""
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
            transforms.append(cls(**follow_stage_size(name, spec, image_size), strict=True))
        except (TypeError, ValueError) as err:
            raise SolverError(f"{where} ({name}): {_argument_error(err)}{_size_hint(name, spec)}") from None
    return transforms


def _argument_error(err: Exception) -> str:
    """One line for albumentations' argument check (it re-raises pydantic's ValidationError, a block, as a ValueError)."""
    cause = err if isinstance(err, ValidationError) else err.__cause__
    if not isinstance(cause, ValidationError):
        return str(err)
    problems = []
    for e in cause.errors():
        key = ".".join(str(p) for p in e["loc"]) or "arguments"
        problems.append(f"{key}: {e['msg']}" + ("" if e["type"] == "missing" else f" (got {e['input']!r})"))
    return "; ".join(problems)


def _size_hint(name: str, spec: dict) -> str:
    """albumentations 1.x took height/width where 2.x takes size=(h, w): say so to a user of the old names."""
    size = spec.get("size", "auto")
    if STAGE_SIZE_ARGS.get(name) == ("size",) and ({"height", "width"} & set(spec) or not (size == "auto" or isinstance(size, list | tuple))):
        return "; it takes size: [height, width] (albumentations 2), or leave size out to follow the stage's image_size"
    return ""


def takes_original_image(transforms: Sequence[A.BasicTransform]) -> bool:
    """Whether the augmentations get the image as decoded rather than resized to the stage size first.

    The rule: when the first crop, pad or resize among them is a RESIZING one (RandomResizedCrop, ...), it samples
    from the full-resolution image and outputs the stage size itself, as a competitor expects of RandomResizedCrop;
    a crop or pad (RandomCrop, CenterCrop, PadIfNeeded, ...) cuts a region of (or pads) the image resized to the
    stage size. Augmentations before that first one see the same image it sees."""
    for transform in transforms:
        name = type(transform).__name__
        if name in RESIZING or name in CROPS_AND_PADS:
            return name in RESIZING
    return False


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
    on an RGB one. Failures that RGB shares (a crop larger than the stage's image, say) are check_image_sizes'."""
    if in_chans == 3:
        return
    rng = np.random.default_rng(0)
    for i, transform in enumerate(build_augmentations([{**spec, "p": 1.0} for spec in specs], source, image_size)):
        error = _apply(transform, rng.integers(0, 256, (image_size, image_size, in_chans), dtype=np.uint8))[1]
        if error is not None and _apply(transform, rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8))[1] is None:
            raise SolverError(
                f"{source}[{i}] ({type(transform).__name__}): fails on images with {in_chans} channel(s) but works on RGB: {error}; "
                "colour transforms need 3-channel images: remove it or use a channel-agnostic one"
            )


def check_image_sizes(specs: list[dict], source: str, stage_sizes: Sequence[int], in_chans: int, original_hw: tuple[int, int]) -> None:
    """Fail at load time when an augmentation cannot run at a stage's image size (a RandomCrop of 64 at a stage of
    48), naming it and the stage: the augmentations run once each (p=1), in order, on a dummy image as the
    pipeline of each stage gives it to them (the stage size, or original_hw, a training image's, when they take
    the original image)."""
    rng = np.random.default_rng(0)
    checked = set()
    for stage, size in enumerate(stage_sizes):
        if size in checked:
            continue
        checked.add(size)
        transforms = build_augmentations([{**spec, "p": 1.0} for spec in specs], source, size)
        h, w = original_hw if takes_original_image(transforms) else (size, size)
        image = rng.integers(0, 256, (h, w, in_chans), dtype=np.uint8)
        for i, transform in enumerate(transforms):
            before = image.shape
            image, error = _apply(transform, image)
            if error is not None:
                name = type(transform).__name__
                sized = any(specs[i].get(arg, "auto") != "auto" for arg in STAGE_SIZE_ARGS.get(name, ()))
                fix = f"leave its size out (or set it to auto) to follow each stage's image size, or make it fit {size}" if sized else "remove it"
                raise SolverError(
                    f"{source}[{i}] ({name}) cannot run at stage {stage} (image_size {size}) on a {before[0]}x{before[1]} image: {error}; {fix}"
                )


def _apply(transform: A.BasicTransform, image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(the transformed image, None) when the transform runs on image, else (image, the first line of its error)."""
    try:
        with warnings.catch_warnings():  # only a failure matters here; training shows the warnings
            warnings.simplefilter("ignore")
            return A.Compose([transform])(image=image)["image"], None
    except Exception as err:  # albumentations raises TypeError, ValueError, cv2.error ... for a shape it cannot take
        return image, (str(err).splitlines() or [type(err).__name__])[0].rstrip(".")


def build_transform(
    cfg: ExperimentConfig,
    mean: list[float],
    std: list[float],
    train: bool,
    image_size: int | None = None,
    aug_p: float = 1.0,
    augment: list[dict] | None = None,
) -> A.Compose:
    """[Resize] -> training augmentations (applied together with probability aug_p) -> Resize -> normalize -> tensor.

    Evaluation gets no augmentation. image_size defaults to data.image_size (a curriculum stage sets its own).
    The first Resize is left out when the augmentations take the original image (takes_original_image: a
    RandomResizedCrop first samples from the full image); the last one makes every output exactly the stage
    size, whatever the augmentations did (it does nothing to an image already at that size).
    """
    size = image_size or cfg.data.image_size
    augs = build_augmentations(cfg.augment.train if augment is None else augment, image_size=size) if train and aug_p > 0 else []
    group = [A.Sequential(augs, p=aug_p)] if augs else []
    first = [] if takes_original_image(augs) else [A.Resize(size, size)]
    return A.Compose([*first, *group, A.Resize(size, size), A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()])
