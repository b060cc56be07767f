"""Second-level model on the out-of-fold predictions of the first-level experiments: a logistic blend of their
logits or LightGBM, whichever an inner cross-validation on the training folds prefers.

The stack reuses the competition's folds: for outer fold f it trains only on rows of the other folds, whose
features are OOF predictions made without their labels, so its OOF for fold f is an honest estimate.
The number of boosting rounds for fold f is chosen by an inner cross-validation on the training rows only;
early stopping on fold f itself would pick the round count with fold f's labels and make the stack's OOF
score optimistic (the leakage that makes a stack look better on OOF than on the leaderboard).

The same inner folds score every candidate (multinomial logistic regressions over a few C, per label for
multilabel, and LightGBM), so the choice for fold f never sees fold f's labels either. LightGBM's prediction for
fold f is the average of its inner cv boosters (return_cvbooster=True): no refit, and no booster saw fold f.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from solver.base.errors import SolverError
from solver.base.threads import library_threads
from solver.config.level2 import LgbmSpec

TASKS = ("multiclass", "multilabel")
MODELS = ("auto", "logistic", "lgbm")
# Parameters that define what the stack predicts; extra_params may tune LightGBM but not change these.
_RESERVED = ("objective", "num_class", "num_classes", "application", "app", "objective_type", "loss")


def lgbm_params(settings: LgbmSpec, objective: str, num_classes: int, n_rows: int = 0) -> dict:
    bad = sorted(k for k in settings.extra_params if k in _RESERVED)
    if bad:
        raise SolverError(f"stack extra_params may not set {', '.join(bad)}: the objective follows the task; remove them")
    params = {
        "objective": objective,
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": min_data_in_leaf(settings, n_rows),
        "feature_fraction": settings.feature_fraction,
        "lambda_l2": settings.lambda_l2,
        "seed": settings.seed,
        "num_threads": settings.num_threads or library_threads(),
        "deterministic": True,  # same inputs, same stack: reruns and the leakage tests compare exact numbers
        "force_col_wise": True,
        "verbosity": -1,
    }
    if objective == "multiclass":
        params["num_class"] = num_classes
    return {**params, **settings.extra_params}


def min_data_in_leaf(settings: LgbmSpec, n_rows: int) -> int:
    """The set value, or one that grows with the rows: a leaf of 20 rows out of 50,000 fits noise in OOF probabilities."""
    return settings.min_data_in_leaf if settings.min_data_in_leaf is not None else max(20, n_rows // 100)


def _check_settings(settings: LgbmSpec) -> None:
    if settings.model not in MODELS:
        raise SolverError(f"stack model '{settings.model}' is unknown; valid: {', '.join(MODELS)}")
    if not settings.logistic_c or min(settings.logistic_c) <= 0:
        raise SolverError(f"stack logistic_c={list(settings.logistic_c)}: give at least one positive C")
    if settings.inner_folds < 2:
        raise SolverError(f"stack inner_folds={settings.inner_folds}: need at least 2 to choose the number of boosting rounds")
    if settings.num_boost_round < 1 or settings.early_stopping_rounds < 1:
        raise SolverError("stack num_boost_round and early_stopping_rounds must be at least 1")


def _check_frame(X: pd.DataFrame, name: str) -> None:
    if not isinstance(X, pd.DataFrame):
        raise SolverError(f"stack {name} must be a pandas DataFrame with one column per input feature, got {type(X).__name__}")
    if X.columns.duplicated().any():
        raise SolverError(f"stack {name} has duplicate column '{X.columns[X.columns.duplicated()][0]}'; give every input feature a unique name")
    for col in X.columns:
        if not (pd.api.types.is_numeric_dtype(X[col]) or pd.api.types.is_bool_dtype(X[col])):
            raise SolverError(f"stack {name} column '{col}' is {X[col].dtype}, not numeric; stack inputs are predicted probabilities")
    missing = X.isna().any(axis=1).to_numpy()
    if missing.any():
        # A NaN row is a row some input experiment has no prediction for, usually a fold that never ran.
        first = X.index[missing][0]
        cols = ", ".join(map(str, X.columns[X.loc[first].isna()][:5]))
        raise SolverError(
            f"stack {name} has {int(missing.sum())} rows with missing values (first: row {first!r}, columns {cols}); "
            "rerun the input experiments on every fold and predict the whole test set"
        )


def _check_inputs(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, X_test: pd.DataFrame, task: str, num_classes: int) -> None:
    if task not in TASKS:
        raise SolverError(f"stack task '{task}' is unknown; valid: {', '.join(TASKS)}")
    _check_frame(X, "X")
    _check_frame(X_test, "X_test")
    train_cols, test_cols = list(map(str, X.columns)), list(map(str, X_test.columns))
    if train_cols != test_cols:
        for i, (a, b) in enumerate(zip(train_cols, test_cols)):
            if a != b:
                raise SolverError(
                    f"stack X and X_test differ at column {i}: '{a}' in X, '{b}' in X_test; build both from the same experiments in the same order"
                )
        longer, extra = ("X", train_cols[len(test_cols)]) if len(train_cols) > len(test_cols) else ("X_test", test_cols[len(train_cols)])
        raise SolverError(
            f"stack X has {len(train_cols)} columns, X_test {len(test_cols)}; first extra column '{extra}' in {longer}; "
            "build both from the same experiments"
        )
    if len(folds) != len(X) or len(y) != len(X):
        raise SolverError(f"stack X has {len(X)} rows but y has {len(y)} and folds {len(folds)}; they must describe the same training rows")
    if (folds < 0).any():
        raise SolverError(f"{int((folds < 0).sum())} training rows have no fold (negative fold index); remake the folds file")
    n_folds = int(folds.max()) + 1
    if n_folds < 2 or len(np.unique(folds)) != n_folds:
        raise SolverError(f"folds must number 0..K-1 with K >= 2, got {sorted(np.unique(folds).tolist())}")
    if task == "multiclass":
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
            raise SolverError(f"multiclass stack: y must be (N,) class indices in 0..{num_classes - 1}, got shape {y.shape} dtype {y.dtype}")
    elif y.shape != (len(X), num_classes) or not np.isin(y, (0, 1)).all():
        raise SolverError(f"multilabel stack: y must be (N, {num_classes}) of 0/1, got shape {y.shape}")


def inner_splits(y: np.ndarray, settings: LgbmSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """The inner folds of one outer fold's training rows, shared by every candidate (a paired comparison)."""
    rows = np.zeros(len(y))
    with warnings.catch_warnings():
        # A class rarer than inner_folds makes sklearn warn about stratification; the split is still usable.
        warnings.filterwarnings("ignore", message="The least populated class")
        try:
            return list(StratifiedKFold(settings.inner_folds, shuffle=True, random_state=settings.seed).split(rows, y))
        except ValueError:  # every class rarer than inner_folds: no stratified split exists
            return list(KFold(settings.inner_folds, shuffle=True, random_state=settings.seed).split(rows))


@dataclass
class Candidate:
    """One level-2 model scored by the inner CV: its loss there, and how to predict with it once chosen."""

    name: str
    loss: float
    predict: object  # callable: rows -> (n,) positive-class or (n, C) class probabilities
    rounds: int = 0
    gain: np.ndarray | None = None
    inner: np.ndarray | None = None  # its inner-CV predictions of the training rows, scored by the competition's metric


def _lgbm(params: dict, X: np.ndarray, y: np.ndarray, splits, settings: LgbmSpec) -> Candidate:
    """lightgbm.cv on the shared inner folds; early stopping picks the rounds without the outer fold's labels.

    The fold's predictions average the inner boosters (each saw (K-1)/K of the training rows, none the outer fold),
    unless settings.refit trains one more booster on all the training rows for the chosen rounds."""
    train = lgb.Dataset(X, y, params={"verbosity": -1}, free_raw_data=False)
    result = lgb.cv(
        params,
        train,
        num_boost_round=settings.num_boost_round,
        folds=splits,
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
        return_cvbooster=True,
    )
    # lgb.cv truncates its history at the best iteration once early stopping fires (or at the last round).
    mean_key = next(k for k in result if k.endswith("-mean"))
    rounds, loss = len(result[mean_key]), float(result[mean_key][-1])
    boosters = result["cvbooster"].boosters
    inner = None
    for booster, (_, score_rows) in zip(boosters, splits):
        p = booster.predict(X[score_rows], num_iteration=rounds)
        inner = np.zeros((len(y), *p.shape[1:])) if inner is None else inner
        inner[score_rows] = p
    if settings.refit:
        booster = lgb.train(params, lgb.Dataset(X, y, params={"verbosity": -1}), num_boost_round=rounds)
        return Candidate("lgbm", loss, booster.predict, rounds, booster.feature_importance(importance_type="gain"), inner)
    gain = np.mean([b.feature_importance(importance_type="gain", iteration=rounds) for b in boosters], axis=0)
    return Candidate("lgbm", loss, lambda x: np.mean([b.predict(x, num_iteration=rounds) for b in boosters], axis=0), rounds, gain, inner)


def _logistic_fit(X: np.ndarray, y: np.ndarray, c: float, n_out: int):
    """A standardised multinomial (or binary) logistic regression; predict gives every class's column, also of a
    class absent from these rows (probability 0 there)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    if len(np.unique(y)) < 2:
        constant = np.eye(n_out)[int(y[0])]
        return lambda x: np.tile(constant, (len(x), 1))
    model.fit(X, y)
    classes = model.classes_.astype(int)

    def predict(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), n_out))
        out[:, classes] = model.predict_proba(x)
        return out

    return predict


def _logistic(X: np.ndarray, y: np.ndarray, splits, c: float, n_out: int, columns: np.ndarray, label: str) -> Candidate:
    """Inner-CV log loss of a logistic blend on the given columns of X."""
    inner = np.zeros((len(y), n_out))
    for fit_rows, score_rows in splits:
        inner[score_rows] = _logistic_fit(X[fit_rows][:, columns], y[fit_rows], c, n_out)(X[score_rows][:, columns])
    loss = log_loss(y, np.clip(inner, 1e-15, 1), labels=list(range(n_out)))
    fitted = _logistic_fit(X[:, columns], y, c, n_out)
    return Candidate(f"logistic(C={c:g}{label})", float(loss), lambda x: fitted(x[:, columns]), inner=inner)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _weighted_blend_fit(X: np.ndarray, y: np.ndarray, groups: list[np.ndarray], n_out: int):
    """softmax(sum_s w_s * logits_s + b): one weight per input model and one bias per class, by L-BFGS on the log
    loss. S + C parameters where a full logistic regression has C x columns: the blend a strong and a weak input
    need (a small weight for the weak one), hard to overfit on a few thousand rows."""
    blocks = np.stack([X[:, g] for g in groups])  # (S, n, C)
    onehot = np.eye(n_out)[y]

    def loss_grad(theta):
        w, b = theta[: len(groups)], theta[len(groups) :]
        p = _softmax(np.tensordot(w, blocks, axes=1) + b)
        residual = (p - onehot) / len(y)
        loss = -np.log(np.clip(p[np.arange(len(y)), y], 1e-15, None)).mean()
        return loss, np.concatenate([(residual[None] * blocks).sum((1, 2)), residual.sum(0)])

    start = np.concatenate([np.full(len(groups), 1.0 / len(groups)), np.zeros(n_out)])
    theta = minimize(loss_grad, start, jac=True, method="L-BFGS-B").x
    w, b = theta[: len(groups)], theta[len(groups) :]
    return lambda x: _softmax(np.tensordot(w, np.stack([x[:, g] for g in groups]), axes=1) + b), w


def _weighted_blend(X: np.ndarray, y: np.ndarray, splits, groups: list[np.ndarray], n_out: int) -> Candidate:
    inner = np.zeros((len(y), n_out))
    for fit_rows, score_rows in splits:
        inner[score_rows] = _weighted_blend_fit(X[fit_rows], y[fit_rows], groups, n_out)[0](X[score_rows])
    fitted, weights = _weighted_blend_fit(X, y, groups, n_out)
    name = "blend(" + ", ".join(f"{w:.2f}" for w in weights) + ")"
    return Candidate(name, float(log_loss(y, np.clip(inner, 1e-15, 1), labels=list(range(n_out)))), fitted, inner=inner)


def _choose(
    params: dict,
    X: np.ndarray,
    y: np.ndarray,
    settings: LgbmSpec,
    n_out: int,
    optional: np.ndarray,
    groups: list[np.ndarray] = (),
    metric=None,
) -> tuple[Candidate, dict]:
    """Every candidate scored on the same inner folds of (X, y); the best inner score by metric wins (log loss
    breaks ties), or without a metric the lowest inner log loss. A stack scored by accuracy is chosen by accuracy:
    the lowest log loss can move argmaxes the wrong way.

    optional marks a block of columns (the kNN features) that the logistic blends try with and without; groups,
    the columns of each input model's logits in class order (multiclass), enable the weighted blend."""
    splits = inner_splits(y, settings)
    candidates = []
    if settings.model in ("auto", "logistic") and len(groups):
        candidates.append(_weighted_blend(X, y, splits, list(groups), n_out))
    if settings.model in ("auto", "logistic"):
        every = np.arange(X.shape[1])
        column_sets = [(every, "")] + ([(np.flatnonzero(~optional), ", no knn")] if optional.any() and (~optional).any() else [])
        for c in settings.logistic_c:
            candidates += [_logistic(X, y, splits, c, n_out, columns, label) for columns, label in column_sets]
    if settings.model in ("auto", "lgbm"):
        candidates.append(_lgbm(params, X, y, splits, settings))
    scores = {cand.name: float(metric(y, cand.inner)) for cand in candidates} if metric is not None else {}
    sign = 1 if metric is None or metric.greater_is_better else -1
    best = min(candidates, key=lambda cand: (-sign * scores.get(cand.name, 0.0), cand.loss))
    return best, {cand.name: cand.loss for cand in candidates}, scores


def _binary_column(predict):
    """A binary candidate's (n, 2) probabilities -> the positive class; LightGBM's binary predictions are that already."""
    return lambda x: (lambda p: p[:, 1] if p.ndim == 2 else p)(predict(x))


def knn_block_gain(inner_losses: list[dict]) -> float | None:
    """Mean over fold models of (best logistic loss without the kNN block - best with it): > 0 when the block helps."""
    gains = []
    for losses in inner_losses:
        with_block = [v for k, v in losses.items() if k.startswith("logistic") and "no knn" not in k]
        without = [v for k, v in losses.items() if "no knn" in k]
        if with_block and without:
            gains.append(min(without) - min(with_block))
    return float(np.mean(gains)) if gains else None


def stack_lgbm(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    X_test: pd.DataFrame,
    task: str,
    num_classes: int,
    settings: LgbmSpec,
    progress: bool = True,
    optional_columns: list[str] = (),
    blend_groups: list[list[str]] = (),
    metric=None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Out-of-fold and test probabilities of a stack over the same folds as its inputs.

    Per outer fold (and, multilabel, per label) the model is chosen by inner CV on that fold's training rows:
    a weighted blend of the input models' logits (multiclass, when blend_groups names each input's C columns in
    class order), logistic blends (settings.logistic_c, with and without optional_columns) and LightGBM
    (settings.model limits it). metric (multiclass): candidates are ranked by it on the inner CV, log loss breaking ties.
    Returns (oof (N, C), test (N_test, C), info). info["models"][f] is the chosen model per fold (a list per label
    for multilabel), info["inner_cv_loss"][f] every candidate's inner log loss (a list of dicts per label),
    info["best_rounds"][f] LightGBM's round count there (0 where another model was chosen or a label is constant
    in the training part, which then predicts its training mean); info["feature_importance"] is LightGBM's total
    gain per column of X, summed over folds (and labels); info["knn_gain"] the inner log loss the optional block saves.
    """
    y, folds = np.asarray(y), np.asarray(folds)
    _check_settings(settings)
    _check_inputs(X, y, folds, X_test, task, num_classes)
    # Plain float arrays: LightGBM rejects some characters in feature names (':', ',', brackets) that experiment names may contain.
    x_all, x_test = X.to_numpy(dtype=np.float64), X_test.to_numpy(dtype=np.float64)
    optional = np.isin(X.columns.astype(str), list(map(str, optional_columns)))
    position = {str(c): i for i, c in enumerate(X.columns)}
    groups = [np.array([position[str(c)] for c in group]) for group in blend_groups if all(str(c) in position for c in group)]
    if task == "multiclass" and any(len(g) != num_classes for g in groups):
        raise SolverError(f"stack blend_groups must name {num_classes} columns per input (one per class)")
    n_folds = int(folds.max()) + 1
    oof = np.zeros((len(X), num_classes))
    test = np.zeros((len(X_test), num_classes))
    gain = np.zeros(X.shape[1])
    best_rounds, inner_loss, inner_score, models = [], [], [], []
    for f in tqdm(range(n_folds), desc="stack", leave=False, disable=not progress):
        train, valid = folds != f, folds == f
        n_rows = int(train.sum())
        if task == "multiclass":
            params = lgbm_params(settings, "multiclass", num_classes, n_rows)
            best, losses, scores = _choose(params, x_all[train], y[train], settings, num_classes, optional, groups, metric)
            inner_score.append(scores)
            oof[valid] = best.predict(x_all[valid])
            test += best.predict(x_test) / n_folds
            gain += best.gain if best.gain is not None else 0
            best_rounds.append(best.rounds)
            inner_loss.append(losses)
            models.append(best.name)
            continue
        params = lgbm_params(settings, "binary", num_classes, n_rows)
        fold_rounds, fold_loss, fold_models = [], [], []
        for j in range(num_classes):
            y_j = y[train, j].astype(int)
            if y_j.min() == y_j.max():
                # One class only: no model can learn anything, and LightGBM's CV cannot stratify it.
                oof[valid, j] = y_j.mean()
                test[:, j] += y_j.mean() / n_folds
                fold_rounds.append(0)
                fold_loss.append({})
                fold_models.append("constant")
                continue
            best, losses, _ = _choose(params, x_all[train], y_j, settings, 2, optional)
            predict = _binary_column(best.predict)
            oof[valid, j] = predict(x_all[valid])
            test[:, j] += predict(x_test) / n_folds
            gain += best.gain if best.gain is not None else 0
            fold_rounds.append(best.rounds)
            fold_loss.append(losses)
            fold_models.append(best.name)
        best_rounds.append(fold_rounds)
        inner_loss.append(fold_loss)
        models.append(fold_models)
    flat_losses = [d for fold in inner_loss for d in (fold if isinstance(fold, list) else [fold])]
    info = {
        "models": models,
        "best_rounds": best_rounds,
        "inner_cv_loss": inner_loss,
        "inner_cv_score": inner_score,  # multiclass with a metric: every candidate's inner-CV score per fold
        "feature_importance": dict(zip(map(str, X.columns), gain.tolist())),
        "knn_gain": knn_block_gain(flat_losses),
    }
    return oof, test, info
