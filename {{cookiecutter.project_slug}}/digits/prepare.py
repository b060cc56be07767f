"""Lay out scikit-learn's bundled digits as a Kaggle competition in data/digits/ (no download).

  train.csv (id, label)  test.csv (id)  train/<id>.png  test/<id>.png  sample_submission.csv (id, label)
  test_answers.csv: the held-out test labels, used only to score the demo

Run: python digits/prepare.py [--data-dir data/digits]
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

TEST_FRACTION = 0.2
SEED = 0


def prepare(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    if (data_dir / "test_answers.csv").is_file():
        print(f"digits: {data_dir} is ready")
        return data_dir
    partial = data_dir.with_name(data_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255 grayscale
    ids = np.array([f"digit_{i:04d}" for i in range(len(images))])
    train_idx, test_idx = train_test_split(np.arange(len(images)), test_size=TEST_FRACTION, stratify=digits.target, random_state=SEED)
    for split, index in (("train", train_idx), ("test", test_idx)):
        (partial / split).mkdir(parents=True)
        for i in index:
            cv2.imwrite(str(partial / split / f"{ids[i]}.png"), images[i])
    pd.DataFrame({"id": ids[train_idx], "label": digits.target[train_idx]}).to_csv(partial / "train.csv", index=False)
    pd.DataFrame({"id": ids[test_idx]}).to_csv(partial / "test.csv", index=False)
    pd.DataFrame({"id": ids[test_idx], "label": 0}).to_csv(partial / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids[test_idx], "label": digits.target[test_idx]}).to_csv(partial / "test_answers.csv", index=False)
    if data_dir.exists():
        shutil.rmtree(data_dir)
    os.replace(partial, data_dir)  # the folder appears complete or not at all
    print(f"digits: wrote {len(train_idx)} train and {len(test_idx)} test images to {data_dir}")
    return data_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data/digits"))
    prepare(parser.parse_args().data_dir)
