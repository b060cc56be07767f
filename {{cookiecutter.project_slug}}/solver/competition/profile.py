"""What a competition's data looks like, read once: counts, image size and channels, classes and their balance.

`make experiment` sizes the first experiment from it (solver/train/sizing.py): the image size from the native size,
the epochs from the number of rows. Image sizes come from the files' headers (read_sample_header, about 0.1 ms a
file), on a random sample of the training images, so a folder of 100,000 images is profiled in a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.competition.contract import Competition
from solver.competition.images import read_sample_header

SAMPLE = 500  # training images whose headers are read


@dataclass(frozen=True)
class DataProfile:
    n_train: int
    n_test: int
    height: int  # median over the sampled training images
    width: int
    channels: int  # the most common channel count among them
    sizes_vary: bool  # the sampled images are not all of one size
    num_classes: int
    task: str
    smallest_class: float  # share of the training rows of the rarest class (multilabel: rows carrying it)
    largest_class: float
    labels_per_row: float  # 1 for multiclass; the mean number of labels for multilabel

    @property
    def native_size(self) -> int:
        """The longer side of a typical image: what the network should see without upscaling."""
        return max(self.height, self.width)

    @property
    def imbalance(self) -> float:
        """Largest class share over smallest (1: balanced)."""
        return self.largest_class / self.smallest_class if self.smallest_class else float("inf")

    def describe(self) -> str:
        size = f"{self.height}x{self.width}" + (" (median; sizes vary)" if self.sizes_vary else "")
        labels = f", {self.labels_per_row:.2f} labels per row" if self.task == "multilabel" else ""
        return (
            f"{self.n_train} train / {self.n_test} test images, {size} px, {self.channels} channel(s), {self.num_classes} classes "
            f"({self.smallest_class:.1%} to {self.largest_class:.1%} of the rows{labels})"
        )


def profile_data(comp: Competition, sample: int = SAMPLE, seed: int = 0) -> DataProfile:
    """Profile data/<comp>/ against its contract; the contract's own errors (missing file, column, label) come first."""
    train, test = comp.read_train(), comp.read_test()
    y = comp.encode_targets(train)
    rows = np.random.default_rng(seed).permutation(len(train))[:sample]
    ids = train[comp.cfg.id_column].astype(str).to_numpy()
    shapes = np.array([read_sample_header(comp.image_files("train", ids[i])) for i in rows])
    channels = np.bincount(shapes[:, 2]).argmax()
    if comp.cfg.task == "multiclass":
        shares = np.bincount(y, minlength=comp.num_classes) / max(len(y), 1)
        per_row = 1.0
    else:
        shares = y.mean(axis=0) if len(y) else np.zeros(comp.num_classes)
        per_row = float(y.sum(axis=1).mean()) if len(y) else 0.0
    return DataProfile(
        n_train=len(train),
        n_test=len(test),
        height=int(np.median(shapes[:, 0])),
        width=int(np.median(shapes[:, 1])),
        channels=int(channels),
        sizes_vary=len({tuple(s[:2]) for s in shapes}) > 1,
        num_classes=comp.num_classes,
        task=comp.cfg.task,
        smallest_class=float(shares.min()),
        largest_class=float(shares.max()),
        labels_per_row=per_row,
    )
