"""Small synthetic competitions in Kaggle layout, learnable in seconds.

multiclass: class k draws a bright square at the k-th position of a grid.
multilabel: label j, when present, draws a bright square in the j-th quadrant.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

TINY_EXPERIMENT = {
    "model": {"name": "test_resnet"},
    "data": {"image_size": 32, "batch_size": 8},
    "augment": {"train": [{"name": "RandomBrightnessContrast", "p": 0.5}]},
    "train": {"epochs": 2, "lr": 3e-3, "early_stopping_patience": None},
}


def _square(image: np.ndarray, slot: int, slots_per_side: int, value: int) -> None:
    size = image.shape[0] // slots_per_side
    r, c = divmod(slot, slots_per_side)
    image[r * size : (r + 1) * size, c * size : (c + 1) * size] = value


def make_competition(
    root: Path,
    name: str = "synth",
    task: str = "multiclass",
    labels: list[str] | None = None,
    n_train: int = 48,
    n_test: int = 16,
    channels: int = 3,
    multilabel_format: str = "space",  # space | columns
    seed: int = 0,
    experiment: dict | None = None,
    channel_files: list[str] | None = None,
    size: int = 32,
    **contract,
) -> Path:
    """Write <root>/<name>/ (contract + configs/tiny.yaml) and <root>/data/<name>/ (Kaggle files).

    channel_files, e.g. ["{id}_red.png", "{id}_green.png", ...]: each sample is one grayscale file per channel
    (declared as image_channels in the contract, as in Human Protein Atlas); channels is then their number.
    """
    if channel_files:
        channels = len(channel_files)
        contract = {"image_channels": list(channel_files), **contract}
    rng = np.random.default_rng(seed)
    root = Path(root)
    labels = labels or (["cat", "dog", "fox"] if task == "multiclass" else ["0", "1", "2", "3"])
    data = root / "data" / name
    ids = [f"s{i:03d}" for i in range(n_train + n_test)]
    if task == "multiclass":
        y = np.arange(n_train + n_test) % len(labels)
    else:
        y = rng.random((n_train + n_test, len(labels))) < 0.4
    for split, index in (("train", range(n_train)), ("test", range(n_train, n_train + n_test))):
        (data / split).mkdir(parents=True, exist_ok=True)
        for i in index:
            image = rng.integers(0, 60, (size, size, channels), dtype=np.uint8)
            if task == "multiclass":
                _square(image, int(y[i]), 2, 230)
            else:
                for j in np.flatnonzero(y[i]):
                    _square(image, int(j), 2, 230)
            if channel_files:
                for c, pattern in enumerate(channel_files):
                    cv2.imwrite(str(data / split / pattern.format(id=ids[i])), image[:, :, c])
            else:
                cv2.imwrite(str(data / split / f"{ids[i]}.png"), image if channels != 1 else image[:, :, 0])
    train = pd.DataFrame({"id": ids[:n_train]})
    if task == "multiclass":
        train["label"] = [labels[k] for k in y[:n_train]]
        target: str | list[str] = "label"
    elif multilabel_format == "space":
        train["Target"] = [" ".join(labels[j] for j in np.flatnonzero(row)) for row in y[:n_train]]
        target = "Target"
    else:
        for j, label in enumerate(labels):
            train[label] = y[:n_train, j].astype(int)
        target = list(labels)
    train.to_csv(data / "train.csv", index=False)
    pd.DataFrame({"id": ids[n_train:]}).to_csv(data / "test.csv", index=False)
    sample = pd.DataFrame({"id": ids[n_train:]})
    if isinstance(target, list):
        for label in labels:
            sample[label] = 0
    else:
        sample[target] = labels[0]
    sample.to_csv(data / "sample_submission.csv", index=False)
    folder = root / name
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    metric = "accuracy" if task == "multiclass" else "macro_f1"
    cfg = {"name": name, "task": task, "target": target, "metric": metric, "n_folds": 2, **contract}
    (folder / "competition.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (folder / "configs" / "tiny.yaml").write_text(yaml.safe_dump(experiment or TINY_EXPERIMENT, sort_keys=False))
    return folder
