"""Last-layer tuning on frozen embeddings: fold safety, adaptation to a shifted test set, pseudo-labels, init."""

import numpy as np
import pytest
import torch
from torch import nn

from solver.adapt.head_tuning import FoldTarget, fold_safe_head_tuning, predict_head, pseudo_labels, train_head
from solver.base.errors import SolverError
from solver.config.adapt import HeadSpec

N_FOLDS, DIM, CLASSES = 3, 8, 3


def _embeddings(seed=0, n=240, n_test=300, shift=6.0):
    """Gaussian class blobs; the test set's look differs: every test embedding moves by a constant offset."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (CLASSES, DIM))
    y = np.arange(n) % CLASSES
    y_test = rng.integers(0, CLASSES, n_test)
    offset = np.zeros(DIM)
    offset[:2] = shift
    train = [centres[y] + rng.normal(0, 1.0, (n, DIM)) for _ in range(N_FOLDS)]
    test = [centres[y_test] + offset + rng.normal(0, 1.0, (n_test, DIM)) for _ in range(N_FOLDS)]
    return train, test, y, y_test, rng.permutation(np.arange(n) % N_FOLDS)


def _empty_targets():
    return [FoldTarget(np.array([], dtype=int), np.array([], dtype=np.int64), np.array([], dtype=int)) for _ in range(N_FOLDS)]


SETTINGS = HeadSpec(epochs=40, lr=0.05, batch_size=64)


def test_a_rows_oof_prediction_never_depends_on_its_own_label():
    train, test, y, _, folds = _embeddings()
    oof, _, _ = fold_safe_head_tuning(train, test, y, folds, _empty_targets(), "multiclass", CLASSES, SETTINGS)
    flipped = y.copy()
    flipped[folds == 1] = (flipped[folds == 1] + 1) % CLASSES  # every label of fold 1 wrong
    oof_flipped, _, _ = fold_safe_head_tuning(train, test, flipped, folds, _empty_targets(), "multiclass", CLASSES, SETTINGS)
    assert np.array_equal(oof[folds == 1], oof_flipped[folds == 1])
    assert not np.allclose(oof[folds != 1], oof_flipped[folds != 1])
    assert (oof.argmax(1) == y).mean() > 0.8


def test_a_labelled_subset_like_the_test_set_adapts_the_head():
    train, test, y, y_test, folds = _embeddings()
    labelled = np.arange(60)  # 60 labelled test rows; scored on the other 240
    rest = np.arange(60, len(y_test))
    _, before, _ = fold_safe_head_tuning(train, test, y, folds, _empty_targets(), "multiclass", CLASSES, SETTINGS)
    targets = [FoldTarget(labelled, y_test[labelled], np.array([], dtype=int)) for _ in range(N_FOLDS)]
    settings = HeadSpec(epochs=40, lr=0.05, batch_size=64, target_weight=4.0)
    _, after, info = fold_safe_head_tuning(train, test, y, folds, targets, "multiclass", CLASSES, settings)
    accuracy_before, accuracy_after = (before[rest].argmax(1) == y_test[rest]).mean(), (after[rest].argmax(1) == y_test[rest]).mean()
    assert accuracy_after > accuracy_before + 0.05, (accuracy_before, accuracy_after)
    assert info[0]["target_test_rows"] == 60 and info[0]["train_rows"] == 160


def test_pseudo_labels_take_confident_rows_only():
    probs = np.array([[0.96, 0.02, 0.02], [0.5, 0.3, 0.2], [0.01, 0.01, 0.98]])
    rows, labels = pseudo_labels(probs, "multiclass", 0.95)
    assert rows.tolist() == [0, 2] and labels.tolist() == [0, 2]
    rows, labels = pseudo_labels(np.array([[0.99, 0.02], [0.99, 0.6]]), "multilabel", 0.9)
    assert rows.tolist() == [0] and labels.tolist() == [[1, 0]]


def test_the_head_starts_from_the_given_classifier():
    x = np.random.default_rng(0).normal(size=(50, DIM))
    init = nn.Linear(DIM, CLASSES)
    with torch.no_grad():
        init.weight.mul_(5)
    head = train_head(x, np.zeros(50, dtype=np.int64), np.ones(50), "multiclass", CLASSES, HeadSpec(epochs=1, lr=1e-6), init)
    assert np.allclose(predict_head(head, x, "multiclass"), predict_head(init, x, "multiclass"), atol=1e-3)
    with pytest.raises(SolverError, match="classifier maps 8 -> 4"):
        train_head(x, np.zeros(50, dtype=np.int64), np.ones(50), "multiclass", CLASSES, SETTINGS, nn.Linear(DIM, 4))


def test_target_rows_of_the_fold_itself_are_refused():
    train, test, y, _, folds = _embeddings()
    targets = _empty_targets()
    targets[0] = FoldTarget(np.array([], dtype=int), np.array([], dtype=np.int64), np.flatnonzero(folds == 0)[:3])
    with pytest.raises(SolverError, match="fold 0's target set holds rows of fold 0"):
        fold_safe_head_tuning(train, test, y, folds, targets, "multiclass", CLASSES, SETTINGS)
