"""Label shift: the test set has other class proportions (priors) than the training set, the look of each class is the same.

A classifier trained on priors pi_train outputs p(c|x) proportional to p(x|c) pi_train(c). On a test set with priors
pi_test the Bayes posterior is p(x|c) pi_test(c), so the fix is to reweight every posterior by pi_test / pi_train and
renormalise (`adjust`). When pi_test is unknown, the EM algorithm of Saerens, Latinne and Decaestecker (2002, "Adjusting
the outputs of a classifier to new a priori probabilities") estimates it from the unlabelled test posteriors alone
(`estimate_priors`): E-step, adjust the posteriors to the current estimate; M-step, the new estimate is their mean.
It assumes calibrated posteriors; a model that is over-confident moves the estimate less than it should.

Multilabel: every label is its own binary problem (present / absent) with its own prior, estimated the same way.
Pure numpy.
"""

from __future__ import annotations

import numpy as np

from solver.base.errors import SolverError

_FLOOR = 1e-12  # keeps a class the model never predicts from dividing by zero


def _check(posteriors: np.ndarray, priors: np.ndarray, what: str) -> None:
    if posteriors.ndim != 2 or posteriors.shape[1] != len(priors):
        raise SolverError(f"{what}: posteriors of shape {posteriors.shape} do not fit {len(priors)} priors")
    if not np.isfinite(posteriors).all() or (posteriors < 0).any():
        raise SolverError(f"{what}: posteriors must be finite and non-negative")


def adjust(posteriors: np.ndarray, train_priors: np.ndarray, target_priors: np.ndarray) -> np.ndarray:
    """Posteriors of a model trained on train_priors, re-weighted to target_priors (rows sum to 1)."""
    posteriors = np.asarray(posteriors, dtype=float)
    train_priors, target_priors = np.asarray(train_priors, dtype=float), np.asarray(target_priors, dtype=float)
    _check(posteriors, train_priors, "prior adjustment")
    weighted = posteriors * (target_priors / np.maximum(train_priors, _FLOOR))
    total = weighted.sum(axis=1, keepdims=True)
    # A row whose every non-zero class has target prior 0 keeps its original posterior rather than becoming 0/0.
    return np.where(total > 0, weighted / np.where(total > 0, total, 1), posteriors)


def estimate_priors(
    posteriors: np.ndarray, train_priors: np.ndarray, tol: float = 1e-8, max_iter: int = 10_000
) -> tuple[np.ndarray, np.ndarray, int]:
    """EM estimate of the test priors from test posteriors: (priors, adjusted posteriors, iterations).

    Stops when the mean absolute change of the estimate falls below tol.
    """
    posteriors = np.asarray(posteriors, dtype=float)
    train = np.asarray(train_priors, dtype=float)
    _check(posteriors, train, "prior estimation")
    if len(posteriors) == 0:
        raise SolverError("prior estimation: no test rows")
    train = np.maximum(train, _FLOOR)
    train = train / train.sum()
    priors, iterations, change = train.copy(), 0, np.inf
    while change >= tol and iterations < max_iter:
        new = adjust(posteriors, train, priors).mean(axis=0)  # E-step: adjust to the estimate; M-step: their mean
        change = np.abs(new - priors).mean()
        priors, iterations = new, iterations + 1
    return priors, adjust(posteriors, train, priors), iterations


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-15, 1))


def apply_temperature(probs: np.ndarray, temperature: float, multilabel: bool = False) -> np.ndarray:
    """Probabilities with their logits divided by temperature (> 1 softens, < 1 sharpens)."""
    probs = np.asarray(probs, dtype=float)
    if multilabel:
        logits = _log(probs) - _log(1 - probs)
        return 1 / (1 + np.exp(-logits / temperature))
    z = _log(probs) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(y: np.ndarray, probs: np.ndarray, multilabel: bool) -> float:
    if multilabel:
        return float(-(y * _log(probs) + (1 - y) * _log(1 - probs)).mean())
    return float(-_log(probs[np.arange(len(y)), y]).mean())


def fit_temperature(probs: np.ndarray, y: np.ndarray, multilabel: bool = False, iterations: int = 60) -> float:
    """Temperature scaling (Guo et al. 2017) fitted by golden-section search on log T in [1/5, 5].

    EM and the adjustment assume calibrated posteriors; networks trained with label smoothing, MixUp or EMA are often
    under-confident, which makes a prior correction overshoot. Calibrating first is the "bias-corrected calibration
    + EM" recipe of Alexandari et al. (2020) that is hard to beat for label shift.
    """
    y = np.asarray(y)
    # Bounded: on rows the model gets all right the likelihood keeps rising as T -> 0, and a tiny T would make every
    # later mistake catastrophically confident.
    lo, hi = np.log(1 / 5), np.log(5)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = (_nll(y, apply_temperature(probs, np.exp(t), multilabel), multilabel) for t in (a, b))
    for _ in range(iterations):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(y, apply_temperature(probs, np.exp(a), multilabel), multilabel)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(y, apply_temperature(probs, np.exp(b), multilabel), multilabel)
    return float(np.exp((lo + hi) / 2))


def fold_temperatures(oof: np.ndarray, y: np.ndarray, folds: np.ndarray, multilabel: bool = False) -> list[float]:
    """Per fold k, the temperature of fold k's model: fitted on fold k's OOF rows, the only rows that model predicted
    without training on them."""
    oof, y, folds = np.asarray(oof, dtype=float), np.asarray(y), np.asarray(folds)
    return [fit_temperature(oof[folds == k], y[folds == k], multilabel) for k in np.unique(folds)]


def calibrate_folds(fold_probs: list[np.ndarray], temperatures: list[float], multilabel: bool = False) -> np.ndarray:
    """The fold models' predictions of the same rows, each calibrated with its own temperature, combined by their mean
    logit: softmax of the mean of log(p_k) / T_k (multilabel: sigmoid of the mean of logit(p_k) / T_k).

    Why not one temperature for the fold-averaged test: a temperature fitted on OOF describes one fold model, while
    the mean of the folds' probabilities is less confident than any of them, so that temperature over-softens it
    (tests/unit/adapt/test_prior_shift.py, five folds: T 1.29 from OOF where the average wants 0.68; test NLL 0.362 raw, 0.402
    with the OOF temperature, 0.348 calibrated per fold and averaged in logits, 0.339 with the best T for the
    average, which needs the test's labels). Averaging logits keeps the members' calibrated confidence instead of
    the softening that a mean of probabilities adds.
    """
    if len(fold_probs) != len(temperatures) or not fold_probs:
        raise SolverError(f"calibration: {len(fold_probs)} fold predictions for {len(temperatures)} temperatures; give one per fold")
    if multilabel:
        logits = np.mean([(_log(p) - _log(1 - p)) / t for p, t in zip(map(np.asarray, fold_probs), temperatures)], axis=0)
        return 1 / (1 + np.exp(-logits))
    z = np.mean([_log(np.asarray(p, dtype=float)) / t for p, t in zip(fold_probs, temperatures)], axis=0)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def estimate_label_priors(probs: np.ndarray, train_frequencies: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Multilabel: per label, the EM estimate of how often it is present in the rows of probs."""
    probs, train_frequencies = np.asarray(probs, dtype=float), np.asarray(train_frequencies, dtype=float)
    out = np.empty(probs.shape[1])
    for j in range(probs.shape[1]):
        binary = np.stack([1 - probs[:, j], probs[:, j]], axis=1)
        out[j] = estimate_priors(binary, [1 - train_frequencies[j], train_frequencies[j]], tol)[0][1]
    return out


def adjust_labels(probs: np.ndarray, train_frequencies: np.ndarray, target_frequencies: np.ndarray) -> np.ndarray:
    """Multilabel: each label's probability re-weighted to its target frequency (a binary `adjust` per label)."""
    probs = np.asarray(probs, dtype=float)
    out = np.empty_like(probs)
    for j in range(probs.shape[1]):
        binary = np.stack([1 - probs[:, j], probs[:, j]], axis=1)
        out[:, j] = adjust(binary, [1 - train_frequencies[j], train_frequencies[j]], [1 - target_frequencies[j], target_frequencies[j]])[:, 1]
    return out


def class_priors(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Class frequencies of multiclass labels (N,) or label frequencies of multilabel 0/1 targets (N, C)."""
    y = np.asarray(y)
    if y.ndim == 1:
        return np.bincount(y, minlength=num_classes) / len(y)
    return y.mean(axis=0)


def resample_to_priors(y: np.ndarray, priors: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a sample of n rows with the given class proportions (multiclass; with replacement within a class).

    How the prior-shift experiments build a test set with known priors out of labelled rows.
    """
    y, priors = np.asarray(y), np.asarray(priors, dtype=float)
    counts = rng.multinomial(n, priors / priors.sum())
    index = []
    for c, count in enumerate(counts):
        rows = np.flatnonzero(y == c)
        if count and not len(rows):
            raise SolverError(f"class {c} has no rows to resample from")
        if count:
            index.append(rng.choice(rows, count, replace=count > len(rows)))
    return rng.permutation(np.concatenate(index))
