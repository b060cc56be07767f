import numpy as np
import pandas as pd
import pytest

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.competition.folds import load_folds, split_folds


def test_stratified_folds_balance_every_class():
    y = np.repeat(np.arange(4), 25)
    fold = split_folds(y, 5, seed=1)
    for k in range(5):
        assert np.bincount(y[fold == k], minlength=4).tolist() == [5, 5, 5, 5]


def test_multilabel_folds_balance_label_frequencies():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 6)) < [0.5, 0.3, 0.2, 0.1, 0.05, 0.4]).astype(int)
    fold = split_folds(y, 4, seed=0)
    per_fold = np.array([y[fold == k].mean(0) for k in range(4)])
    assert np.abs(per_fold - y.mean(0)).max() < 0.03


@pytest.mark.parametrize("multilabel", [False, True])
def test_grouped_folds_keep_each_group_in_one_fold(multilabel):
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 30, 300)
    y = (rng.random((300, 3)) < 0.3).astype(int) if multilabel else rng.integers(0, 3, 300)
    fold = split_folds(y, 5, seed=0, groups=groups)
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1
    assert set(fold) == set(range(5))


def test_folds_are_seeded():
    y = np.repeat(np.arange(3), 20)
    assert (split_folds(y, 3, seed=7) == split_folds(y, 3, seed=7)).all()
    assert (split_folds(y, 3, seed=7) != split_folds(y, 3, seed=8)).any()


def test_folds_file_is_made_once_and_checked_against_train(tmp_path):
    from tests.synthetic import make_competition

    make_competition(tmp_path)
    comp = Competition.load(tmp_path, "synth")
    first = load_folds(comp)
    mtime = comp.folds_path.stat().st_mtime_ns
    assert (load_folds(Competition.load(tmp_path, "synth")) == first).all()
    assert comp.folds_path.stat().st_mtime_ns == mtime  # read, not remade
    train = pd.read_csv(tmp_path / "data/synth/train.csv").iloc[:-2]
    train.to_csv(tmp_path / "data/synth/train.csv", index=False)
    with pytest.raises(SolverError, match="was made for a different train.csv"):
        load_folds(Competition.load(tmp_path, "synth"))


def test_a_read_only_runs_folder_is_named_when_the_folds_are_made(tmp_path):
    from tests.synthetic import make_competition

    make_competition(tmp_path, n_train=12, n_test=4)
    (tmp_path / "runs").symlink_to("/sys/kernel")  # cannot be written, not even by root
    with pytest.raises(SolverError, match=rf"cannot write to {tmp_path / 'runs/synth'} \("):
        load_folds(Competition.load(tmp_path, "synth"))
