"""Second-level model: LightGBM on the out-of-fold predictions of the first-level experiments.

The stack reuses the competition's folds: for outer fold f it trains only on rows of the other folds, whose
features are OOF predictions made without their labels, so its OOF for fold f is an honest estimate.
The number of boosting rounds for fold f is chosen by an inner cross-validation on the training rows only;
early stopping on fold f itself would pick the round count with fold f's labels and make the stack's OOF
score optimistic (the leakage that makes a stack look better on OOF than on the leaderboard).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from solver.errors import SolverError

TASKS = ("multiclass", "multilabel")
# Parameters that define what the stack predicts; extra_params may tune LightGBM but not change these.
_RESERVED = ("objective", "num_class", "num_classes", "application", "app", "objective_type", "loss")


@dataclass(frozen=True)
class StackSettings:
    num_boost_round: int = 2000  # upper bound; the inner CV's early stopping picks the count per fold
    early_stopping_rounds: int = 50
    learning_rate: float = 0.05
    num_leaves: int = 15  # few, shallow trees: stack inputs are few and already strong
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.8
    lambda_l2: float = 1.0
    inner_folds: int = 3
    seed: int = 42
    num_threads: int = 1
    extra_params: dict = field(default_factory=dict)  # merged last into the LightGBM params


def _params(settings: StackSettings, objective: str, num_classes: int) -> dict:
    bad = sorted(k for k in settings.extra_params if k in _RESERVED)
    if bad:
        raise SolverError(f"stack extra_params may not set {', '.join(bad)}: the objective follows the task; remove them")
    params = {
        "objective": objective,
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "feature_fraction": settings.feature_fraction,
        "lambda_l2": settings.lambda_l2,
        "seed": settings.seed,
        "num_threads": settings.num_threads,
        "deterministic": True,  # same inputs, same stack: reruns and the leakage tests compare exact numbers
        "force_col_wise": True,
        "verbosity": -1,
    }
    if objective == "multiclass":
        params["num_class"] = num_classes
    return {**params, **settings.extra_params}


def _check_settings(settings: StackSettings) -> None:
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


def _best_rounds(params: dict, X: np.ndarray, y: np.ndarray, settings: StackSettings) -> tuple[int, float]:
    """Boosting rounds chosen by early stopping in an inner CV over (X, y) only, and the CV loss there."""
    train = lgb.Dataset(X, y, params={"verbosity": -1}, free_raw_data=False)
    with warnings.catch_warnings():
        # A class rarer than inner_folds makes sklearn warn about stratification; the split is still usable.
        warnings.filterwarnings("ignore", message="The least populated class")
        result = lgb.cv(
            params,
            train,
            num_boost_round=settings.num_boost_round,
            nfold=settings.inner_folds,
            stratified=True,  # by class (multiclass) or by the label (each binary model)
            shuffle=True,
            seed=settings.seed,
            callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
        )
    # lgb.cv truncates its history at the best iteration once early stopping fires (or at the last round).
    mean_key = next(k for k in result if k.endswith("-mean"))
    return len(result[mean_key]), float(result[mean_key][-1])


def _fit_predict(
    params: dict, X: np.ndarray, y: np.ndarray, predict: list[np.ndarray], settings: StackSettings
) -> tuple[list[np.ndarray], int, float, np.ndarray]:
    rounds, cv_loss = _best_rounds(params, X, y, settings)
    booster = lgb.train(params, lgb.Dataset(X, y, params={"verbosity": -1}), num_boost_round=rounds)
    return [booster.predict(p) for p in predict], rounds, cv_loss, booster.feature_importance(importance_type="gain")


def stack_lgbm(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    X_test: pd.DataFrame,
    task: str,
    num_classes: int,
    settings: StackSettings,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Out-of-fold and test probabilities of a LightGBM stack over the same folds as its inputs.

    Returns (oof (N, C), test (N_test, C), info). info["best_rounds"][f] is the round count chosen for outer
    fold f (multiclass: an int; multilabel: a list with one int per label, 0 for a label constant in the
    training part, which then predicts its training mean); info["inner_cv_loss"] mirrors it with the inner CV's
    loss; info["feature_importance"] is the total gain per column of X, summed over folds (and labels).
    """
    y, folds = np.asarray(y), np.asarray(folds)
    _check_settings(settings)
    _check_inputs(X, y, folds, X_test, task, num_classes)
    # Plain float arrays: LightGBM rejects some characters in feature names (':', ',', brackets) that experiment names may contain.
    x_all, x_test = X.to_numpy(dtype=np.float64), X_test.to_numpy(dtype=np.float64)
    n_folds = int(folds.max()) + 1
    oof = np.zeros((len(X), num_classes))
    test = np.zeros((len(X_test), num_classes))
    gain = np.zeros(X.shape[1])
    best_rounds: list = []
    inner_loss: list = []
    for f in tqdm(range(n_folds), desc="stack lgbm", leave=False, disable=not progress):
        train, valid = folds != f, folds == f
        if task == "multiclass":
            params = _params(settings, "multiclass", num_classes)
            (p_valid, p_test), rounds, loss, g = _fit_predict(params, x_all[train], y[train], [x_all[valid], x_test], settings)
            oof[valid], gain = p_valid, gain + g
            test += p_test / n_folds
            best_rounds.append(rounds)
            inner_loss.append(loss)
            continue
        params = _params(settings, "binary", num_classes)
        fold_rounds, fold_loss = [], []
        for j in range(num_classes):
            y_j = y[train, j]
            if y_j.min() == y_j.max():
                # One class only: no model can learn anything, and LightGBM's CV cannot stratify it.
                oof[valid, j] = y_j.mean()
                test[:, j] += y_j.mean() / n_folds
                fold_rounds.append(0)
                fold_loss.append(float("nan"))
                continue
            (p_valid, p_test), rounds, loss, g = _fit_predict(params, x_all[train], y_j, [x_all[valid], x_test], settings)
            oof[valid, j], gain = p_valid, gain + g
            test[:, j] += p_test / n_folds
            fold_rounds.append(rounds)
            fold_loss.append(loss)
        best_rounds.append(fold_rounds)
        inner_loss.append(fold_loss)
    info = {
        "best_rounds": best_rounds,
        "inner_cv_loss": inner_loss,
        "feature_importance": dict(zip(map(str, X.columns), gain.tolist())),
    }
    return oof, test, info
