"""The data profile make experiment sizes exp001 from: counts, sizes and channels from the headers, class balance."""

import numpy as np
import pandas as pd
import pytest

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.competition.profile import profile_data
from tests.synthetic import make_competition


def test_multiclass_counts_size_channels_and_balance(tmp_path):
    make_competition(tmp_path, n_train=30, n_test=7, channels=1, size=24)
    profile = profile_data(Competition.load(tmp_path, "synth"))
    assert (profile.n_train, profile.n_test, profile.height, profile.width, profile.channels) == (30, 7, 24, 24, 1)
    assert profile.native_size == 24 and not profile.sizes_vary
    assert profile.num_classes == 3 and profile.smallest_class == pytest.approx(1 / 3) and profile.imbalance == pytest.approx(1)
    assert "30 train / 7 test images, 24x24 px, 1 channel(s), 3 classes" in profile.describe()


def test_imbalance_and_labels_per_row_of_a_multilabel_competition(tmp_path):
    make_competition(tmp_path, task="multilabel", n_train=40)
    comp = Competition.load(tmp_path, "synth")
    train = comp.read_train()
    y = comp.encode_targets(train)
    profile = profile_data(comp)
    assert profile.labels_per_row == pytest.approx(y.sum(axis=1).mean())
    assert profile.smallest_class == pytest.approx(y.mean(axis=0).min()) and profile.channels == 3
    assert "labels per row" in profile.describe()


def test_sizes_that_vary_give_the_median(tmp_path):
    import cv2

    make_competition(tmp_path, n_train=9, size=32)
    for i, side in enumerate((20, 20, 20, 20, 64, 64, 64, 64, 64)):
        cv2.imwrite(str(tmp_path / f"data/synth/train/s{i:03d}.png"), np.zeros((side, side + 4, 3), np.uint8))
    profile = profile_data(Competition.load(tmp_path, "synth"))
    assert (profile.height, profile.width, profile.sizes_vary) == (64, 68, True) and profile.native_size == 68


def test_a_label_outside_the_contract_is_the_contracts_error(tmp_path):
    make_competition(tmp_path, classes=["cat", "dog"])
    with pytest.raises(SolverError, match="row .* has label 'fox'"):
        profile_data(Competition.load(tmp_path, "synth"))
    assert pd.read_csv(tmp_path / "data/synth/train.csv")["label"].nunique() == 3
