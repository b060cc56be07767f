"""Per-label multilabel thresholds: exact F1 optimum, decision scale, fold safety, frequency matching."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from solver.adapt.thresholds import (
    best_f1_threshold,
    ensure_one_label,
    fit_thresholds,
    fold_safe_thresholds,
    frequency_thresholds,
    to_decision_scale,
)
from solver.competition.metrics import get_metric


def miscalibrated_oof(n=600, seed=0):
    """Multilabel OOF whose labels are rare and whose probabilities are shifted per label, so 0.5 cuts badly."""
    rng = np.random.default_rng(seed)
    frequencies = np.array([0.05, 0.15, 0.3, 0.5])
    y = (rng.random((n, 4)) < frequencies).astype(float)
    logit = rng.normal(np.where(y == 1, 1.5, -1.5), 1.2)
    bias = np.array([-2.5, -1.5, 0.8, 1.5])  # rare labels under-confident, frequent ones over-confident
    return y, 1 / (1 + np.exp(-(logit + bias))), np.arange(n) % 5


def test_best_f1_threshold_is_the_exact_optimum():
    y, probs, _ = miscalibrated_oof()
    for j in range(4):
        t = best_f1_threshold(y[:, j], probs[:, j])
        best = f1_score(y[:, j], probs[:, j] > t)
        grid = [f1_score(y[:, j], probs[:, j] > c, zero_division=0) for c in np.linspace(0.001, 0.999, 120)]
        assert best >= max(grid) - 1e-12 and 0 < t < 1
    assert best_f1_threshold(np.zeros(5), np.linspace(0, 1, 5)) == 0.5  # no positive: nothing to fit


def _brute_force_f1(y, p):
    """The best F1 of any prediction `p >= c` over every candidate cut c (0 included: every row predicted)."""
    return max(f1_score(y, p >= c, zero_division=0) for c in np.unique(np.r_[p, 0.0]))


def test_best_f1_threshold_can_predict_every_row():
    y, p = np.array([1, 1, 0]), np.array([0.3, 0.0, 0.0])
    t = best_f1_threshold(y, p)
    assert f1_score(y, to_decision_scale(p[:, None], [t])[:, 0] > 0.5) == pytest.approx(0.8)  # every row; p > 0.3/2 gives 0.667
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 8))
        y, p = rng.integers(0, 2, n), rng.choice([0.0, 0.2, 0.5, 0.9, 1.0], n)  # ties, zeros and ones
        if y.sum() == 0:
            continue
        t = best_f1_threshold(y, p)
        decided = to_decision_scale(p[:, None], [t])[:, 0] > 0.5
        assert f1_score(y, decided, zero_division=0) == pytest.approx(_brute_force_f1(y, p)), (y, p, t)


def test_decision_scale_cuts_at_half_exactly_where_the_threshold_cuts():
    y, probs, _ = miscalibrated_oof()
    t = np.array([0.1, 0.3, 0.6, 0.9])
    scores = to_decision_scale(probs, t)
    assert ((scores > 0.5) == (probs > t)).all()
    for j in range(4):  # monotone per label: rank metrics are unchanged
        order = np.argsort(probs[:, j])
        assert (np.diff(scores[order, j]) >= 0).all()
    assert np.allclose(to_decision_scale(np.array([[0.0, 1.0, 0.3, 0.9]]), t), [[0.0, 1.0, 0.25, 0.5]])


def test_fold_safe_thresholds_beat_half_on_macro_f1():
    y, probs, folds = miscalibrated_oof()
    macro_f1 = get_metric("macro_f1", "multilabel")
    at_half = macro_f1(y, probs)
    oof, per_fold = fold_safe_thresholds(y, probs, folds)
    assert per_fold.shape == (5, 4)
    assert macro_f1(y, oof) > at_half + 0.1, (at_half, macro_f1(y, oof))


def test_fold_safe_thresholds_do_not_score_noise_as_signal():
    """Probabilities independent of the labels: in-sample thresholds look better than they are; fold-safe ones do not."""
    rng = np.random.default_rng(1)
    y = (rng.random((300, 6)) < 0.08).astype(float)
    probs = rng.random((300, 6))
    folds = np.arange(300) % 5
    macro_f1 = get_metric("macro_f1", "multilabel")
    in_sample = macro_f1(y, to_decision_scale(probs, fit_thresholds(y, probs)))
    fold_safe = macro_f1(y, fold_safe_thresholds(y, probs, folds)[0])
    assert fold_safe < in_sample - 0.02, (fold_safe, in_sample)


def test_any_metric_by_coordinate_ascent():
    y, probs, _ = miscalibrated_oof()
    micro_f1 = get_metric("micro_f1", "multilabel")
    t = fit_thresholds(y, probs, micro_f1)
    assert micro_f1(y, to_decision_scale(probs, t)) > micro_f1(y, probs) + 0.05


def test_frequency_thresholds_and_at_least_one():
    _, probs, _ = miscalibrated_oof()
    frequencies = np.array([0.02, 0.1, 0.5, 0.0])
    t = frequency_thresholds(probs, frequencies)
    assert np.allclose((probs > t).mean(axis=0), frequencies, atol=1 / len(probs))
    scores = ensure_one_label(to_decision_scale(probs, np.full(4, 0.99)))
    assert (scores > 0.5).sum(axis=1).min() == 1
    assert (scores.argmax(axis=1) == probs.argmax(axis=1)).all()


def test_mismatched_shapes_are_errors():
    from solver.base.errors import SolverError

    with pytest.raises(SolverError, match="multilabel 0/1 targets"):
        fit_thresholds(np.zeros(10), np.zeros((10, 2)))
