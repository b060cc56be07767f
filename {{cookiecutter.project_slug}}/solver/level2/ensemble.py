"""Blending the predictions of several experiments: plain, rank and weighted averages, and Caruana selection.

All functions take a list of (N, C) probability arrays, one per experiment, whose rows and columns mean the
same thing; solver.runs.source.check_compatible guards that before any blending (same classes, same folds file).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from solver.base.errors import SolverError
from solver.competition.metrics import Metric


def _stack(probs: Sequence[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """(M, N, C) array of M experiments' predictions, after checking they line up; names: the sources, for messages."""
    if len(probs) == 0:
        raise SolverError("nothing to ensemble: give at least one experiment's predictions")
    arrays = [np.asarray(p, dtype=np.float64) for p in probs]
    label = [f"'{name}'" for name in names] if names is not None else [f"number {i}" for i in range(len(arrays))]
    for i, p in enumerate(arrays):
        if p.shape != arrays[0].shape:
            raise SolverError(
                f"the predictions of {label[i]} have shape {p.shape} but those of {label[0]} have {arrays[0].shape}; "
                "ensemble experiments predicted on the same rows with the same classes"
            )
        if not np.isfinite(p).all():
            raise SolverError(
                f"the predictions of {label[i]} contain NaN or infinite values ({int((~np.isfinite(p)).sum())} of them); "
                "rerun that source's stage (its prediction) before ensembling it"
            )
    return np.stack(arrays)


def mean_ensemble(probs: list[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """Plain average: the robust default, nothing fitted on OOF labels, nothing to overfit."""
    return _stack(probs, names).mean(0)


def rank_average(probs: list[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """Per column, the mean of each experiment's ranks scaled to [0, 1].

    For ranking metrics (AUC) only: it ignores the experiments' calibration, so one model with sharp
    probabilities cannot dominate the blend. The result is a score, not a probability (rows need not sum to 1).
    """
    stacked = _stack(probs, names)
    n = stacked.shape[1]
    if n == 1:
        return np.full(stacked.shape[1:], 0.5)
    ranks = rankdata(stacked, axis=1)  # ties share their average rank
    return ((ranks - 1) / (n - 1)).mean(0)


def weighted_average(probs: list[np.ndarray], weights: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    """Weighted mean of the experiments' predictions; weights are normalized to sum to 1."""
    stacked = _stack(probs, names)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if len(w) != len(stacked):
        raise SolverError(f"{len(w)} weights for {len(stacked)} experiments; give one weight per experiment")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise SolverError(f"ensemble weights must be finite, non-negative and not all zero, got {w.tolist()}")
    return np.tensordot(w / w.sum(), stacked, axes=1)


def caruana_weights(oof_probs: list[np.ndarray], y: np.ndarray, metric: Metric, iterations: int = 50, init_best: int = 1) -> np.ndarray:
    """Ensemble selection (Caruana et al. 2004): greedy forward selection with replacement on OOF predictions.

    Starts from the init_best individually best experiments, then each iteration adds (again, possibly) the one
    experiment that makes the running average score best, even if that score is worse: later additions may
    recover, as in the paper. Returns the normalized counts of the best ensemble seen along the way, so on these
    OOF rows the result is never worse than the starting ensemble (with init_best=1: the best single experiment).
    Selection with replacement keeps weights non-negative and coarse (multiples of 1/count), which limits
    overfitting the OOF labels; ties go to the lowest index so results are reproducible.
    The weights are fitted on these OOF labels, so their OOF score is optimistic: use caruana_oof_fold_safe
    for an honest estimate.
    """
    stacked = _stack(oof_probs)
    y = np.asarray(y)
    if len(y) != stacked.shape[1]:
        raise SolverError(f"y has {len(y)} rows but the OOF predictions have {stacked.shape[1]}; both must cover the same training rows")
    n_models = len(stacked)
    if not 1 <= init_best <= n_models:
        raise SolverError(f"caruana init_best={init_best}: must be between 1 and the number of experiments ({n_models})")
    if iterations < 0:
        raise SolverError(f"caruana iterations={iterations}: must be 0 or more")
    single = [metric(y, p) for p in stacked]
    order = sorted(range(n_models), key=lambda i: _sort_key(single[i], metric, i))
    counts = np.zeros(n_models, dtype=np.int64)
    counts[order[:init_best]] = 1
    total = stacked[order[:init_best]].sum(0)
    best_score, best_counts = metric(y, total / init_best), counts.copy()
    for _ in range(iterations):
        n = counts.sum() + 1
        pick, pick_score = 0, None
        for i in range(n_models):
            score = metric(y, (total + stacked[i]) / n)
            if pick_score is None or metric.better(score, pick_score):
                pick, pick_score = i, score
        counts[pick] += 1
        total += stacked[pick]
        if metric.better(pick_score, best_score):
            best_score, best_counts = pick_score, counts.copy()
    return best_counts / best_counts.sum()


def _sort_key(score: float, metric: Metric, index: int) -> tuple[int, float, int]:
    """Best score first, NaN last, lowest index among equals."""
    if np.isnan(score):
        return (1, 0.0, index)
    return (0, -score if metric.greater_is_better else score, index)


def caruana_oof_fold_safe(
    oof_probs: list[np.ndarray],
    y: np.ndarray,
    folds: np.ndarray,
    metric: Metric,
    iterations: int = 50,
    init_best: int = 1,
    names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Caruana blend whose OOF does not use its own rows' labels: (oof (N, C), weights for the test set).

    caruana_weights fitted on all OOF rows chooses weights with the very labels it is then scored on, so its
    OOF score is optimistic (more so with many experiments and few rows) and not comparable with the single
    experiments' OOF or with a stack's honest OOF. Here each fold's rows are blended with weights fitted on the
    other folds only, the same protocol as the experiments themselves; the returned weights are fitted on all rows,
    for the test set, where no labels are involved.
    """
    stacked = _stack(oof_probs, names)
    folds = np.asarray(folds)
    if len(folds) != stacked.shape[1]:
        raise SolverError(f"folds has {len(folds)} rows but the OOF predictions have {stacked.shape[1]}; use the competition's folds file")
    if len(np.unique(folds)) < 2:
        raise SolverError("caruana_oof_fold_safe needs at least 2 folds: each fold's weights are fitted on the others")
    y = np.asarray(y)
    oof = np.zeros(stacked.shape[1:])
    for f in np.unique(folds):
        train, valid = folds != f, folds == f
        w = caruana_weights(list(stacked[:, train]), y[train], metric, iterations, init_best)
        oof[valid] = np.tensordot(w, stacked[:, valid], axes=1)
    return oof, caruana_weights(list(stacked), y, metric, iterations, init_best)
