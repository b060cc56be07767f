"""Per-label decision thresholds for multilabel competitions (Human Protein Atlas and alike).

A model trained with binary cross-entropy ranks well but its probabilities are rarely cut best at 0.5: rare labels
want a lower threshold, and the F1 of each label has its own optimum. Thresholds are fitted on OOF predictions:

- macro F1 (the default): each label's F1 depends on that label's threshold only, so each is maximised exactly
  over every cut between two distinct OOF probabilities;
- any other metric (the competition's, a custom one): coordinate ascent over a grid of candidates per label.

A thresholds source stores its probabilities on a *decision scale*: a piecewise-linear, per-label monotone map that
sends the fitted threshold t to the competition's cut c, its submission.threshold (0 -> 0, t -> c, 1 -> 1). Cutting
the stored values at c gives exactly the fitted decisions, so the leaderboard's metric, `make submit` and later
ensembles all see the same labels, and rank metrics (AUC, average precision) are unchanged. A threshold of 0 means
"every row": the only way to predict a label for rows whose probability is exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from solver.base.errors import SolverError

DECISION = 0.5  # where a thresholds source's stored probabilities are cut unless the competition cuts elsewhere
_EDGE = 1e-6  # thresholds stay inside (0, 1) so the decision map is defined on both sides
EVERY_ROW = 0.0  # the threshold that predicts the label for every row, zero probabilities included


def _check(y: np.ndarray, probs: np.ndarray) -> None:
    if probs.ndim != 2 or y.shape != probs.shape:
        raise SolverError(f"thresholds need multilabel 0/1 targets and probabilities of one shape, got {y.shape} and {probs.shape}")


def _below_all(lowest: float) -> float:
    """A threshold under every probability: half the lowest one, or EVERY_ROW when that is (nearly) 0."""
    return lowest / 2 if lowest / 2 >= _EDGE else EVERY_ROW


def best_f1_threshold(y: np.ndarray, p: np.ndarray, default: float = 0.5) -> float:
    """The threshold t maximising the F1 of `p > t` against 0/1 labels y (default when y has no positive;
    EVERY_ROW when predicting every row is best and some rows have p = 0)."""
    positives = float(y.sum())
    if positives == 0 or len(p) == 0:
        return default
    order = np.argsort(-p, kind="stable")
    p_sorted, tp = p[order], np.cumsum(y[order])
    # Predicting the top k rows is possible only where the probability changes between row k-1 and row k.
    cuts = np.flatnonzero(np.r_[p_sorted[:-1] > p_sorted[1:], True]) + 1
    f1 = 2 * tp[cuts - 1] / (cuts + positives)
    k = cuts[int(np.argmax(f1))]
    if k == len(p):
        return float(_below_all(p_sorted[-1]))
    return float(np.clip((p_sorted[k - 1] + p_sorted[k]) / 2, _EDGE, 1 - _EDGE))


def to_decision_scale(probs: np.ndarray, thresholds: np.ndarray, cut: float = DECISION) -> np.ndarray:
    """Per label, the monotone piecewise-linear map 0 -> 0, t -> cut, 1 -> 1: `out > cut` exactly when `p > t`
    (for every row when t is EVERY_ROW)."""
    probs, t = np.clip(np.asarray(probs, dtype=float), 0, 1), np.asarray(thresholds, dtype=float)[None, :]
    chosen = (probs > t) | (t <= EVERY_ROW)
    below = cut * probs / np.maximum(t, _EDGE)
    above = cut + (1 - cut) * (probs - t) / (1 - t)
    return np.where(chosen, np.maximum(above, np.nextafter(cut, 1)), np.minimum(below, cut))


def ensure_one_label(scores: np.ndarray, cut: float = DECISION) -> np.ndarray:
    """Rows with no label above the cut get their highest decision-scale label (the one nearest to passing its
    threshold, relative to it) raised just above the cut: at least one label per row."""
    scores = scores.copy()
    empty = ~(scores > cut).any(axis=1)
    rows, best = np.flatnonzero(empty), scores[empty].argmax(axis=1)
    scores[rows, best] = cut + 1e-6  # survives a CSV round trip at any reasonable precision
    return scores


def fit_thresholds(
    y: np.ndarray, probs: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float] | None = None, grid: int = 40, cut: float = DECISION
) -> np.ndarray:
    """Per-label thresholds fitted on (y, probs): exact per-label F1 when metric is None (macro F1), else coordinate ascent.

    metric: (y_true, y_prob) -> score, greater is better, cutting y_prob at `cut` (solver.competition.metrics' label-based metrics
    cut at the competition's submission.threshold).
    """
    y, probs = np.asarray(y, dtype=float), np.asarray(probs, dtype=float)
    _check(y, probs)
    if metric is None:
        return np.array([best_f1_threshold(y[:, j], probs[:, j]) for j in range(y.shape[1])])
    thresholds = np.full(y.shape[1], 0.5)
    best = metric(y, to_decision_scale(probs, thresholds, cut))
    for _ in range(2):  # two sweeps: later labels' thresholds change what is best for earlier ones
        improved = False
        for j in tqdm(range(y.shape[1]), desc="thresholds", leave=False, mininterval=1):
            column = np.unique(probs[:, j])
            candidates = np.unique(np.clip(np.quantile(column, np.linspace(0, 1, grid)) if len(column) else [], _EDGE, 1 - _EDGE))
            for t in candidates:
                trial = thresholds.copy()
                trial[j] = t
                score = metric(y, to_decision_scale(probs, trial, cut))
                if score > best + 1e-12:
                    best, thresholds, improved = score, trial, True
        if not improved:
            break
    return thresholds


def frequency_thresholds(probs: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """Per label, the threshold that makes round(f * N) rows of probs (the highest) predict the label."""
    probs = np.asarray(probs, dtype=float)
    out = np.empty(probs.shape[1])
    for j, f in enumerate(frequencies):
        p = np.sort(probs[:, j])[::-1]
        k = int(round(float(f) * len(p)))
        if k >= len(p):
            out[j] = _below_all(p[-1])
        else:
            out[j] = np.clip(p[0] if k <= 0 else (p[k - 1] + p[k]) / 2, _EDGE, 1 - _EDGE)
    return out


def fold_safe_thresholds(y: np.ndarray, probs: np.ndarray, folds: np.ndarray, metric=None, cut: float = DECISION) -> tuple[np.ndarray, np.ndarray]:
    """Decision-scale OOF where fold k's rows are cut with thresholds fitted on the other folds' rows only,
    and the per-fold thresholds (n_folds, C). A fold's OOF score then estimates how thresholds fitted on all of
    the OOF will do on the test set, instead of rewarding thresholds that memorised the rows they are scored on."""
    y, probs, folds = np.asarray(y, dtype=float), np.asarray(probs, dtype=float), np.asarray(folds)
    _check(y, probs)
    out = np.empty_like(probs)
    per_fold = []
    for k in np.unique(folds):
        rows = folds == k
        t = fit_thresholds(y[~rows], probs[~rows], metric, cut=cut)
        out[rows] = to_decision_scale(probs[rows], t, cut)
        per_fold.append(t)
    return out, np.array(per_fold)
