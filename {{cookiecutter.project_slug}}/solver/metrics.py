"""Competition metrics by name, and custom metrics defined in a competition folder.

Every metric takes (y_true, y_prob):
  multiclass: y_true (N,) class indices, y_prob (N, C) probabilities
  multilabel: y_true (N, C) 0/1,         y_prob (N, C) probabilities
Label-based metrics threshold multilabel probabilities at 0.5 and take the argmax for multiclass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from solver.custom import load_function
from solver.errors import SolverError, did_you_mean

MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    greater_is_better: bool

    def __call__(self, y_true: np.ndarray, y_prob: np.ndarray) -> float:
        return float(self.fn(np.asarray(y_true), np.asarray(y_prob)))

    def better(self, a: float, b: float | None) -> bool:
        """Is score a better than score b (None: no score yet)?"""
        if b is None or np.isnan(b):
            return True
        return a > b if self.greater_is_better else a < b


def _hard(y_prob: np.ndarray, task: str) -> np.ndarray:
    return y_prob.argmax(1) if task == "multiclass" else (y_prob > 0.5).astype(int)


def _multiclass_log_loss(y_true, y_prob):
    return skm.log_loss(y_true, np.clip(y_prob, 1e-15, 1), labels=np.arange(y_prob.shape[1]))


def _multilabel_log_loss(y_true, y_prob):
    p = np.clip(y_prob, 1e-15, 1 - 1e-15)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


def _macro_auc(y_true, y_prob):
    # Labels without both classes in y_true have no AUC; average over the others (as Kaggle does).
    scores = [skm.roc_auc_score(y_true[:, j], y_prob[:, j]) for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
    return float(np.mean(scores)) if scores else float("nan")


def _multiclass_auc(y_true, y_prob):
    onehot = np.eye(y_prob.shape[1])[y_true]
    return _macro_auc(onehot, y_prob)


def _build_registry() -> dict[str, dict[str, Metric]]:
    def f1(average):
        return lambda task: lambda t, p: skm.f1_score(t, _hard(p, task), average=average, zero_division=0)

    def accuracy(task):
        return lambda t, p: skm.accuracy_score(t, _hard(p, task))

    def kappa(task):
        return lambda t, p: skm.cohen_kappa_score(t, _hard(p, task), weights="quadratic")

    # name -> (greater_is_better, {task: factory})
    table = {
        "accuracy": (True, {"multiclass": accuracy, "multilabel": accuracy}),
        "macro_f1": (True, {"multiclass": f1("macro"), "multilabel": f1("macro")}),
        "micro_f1": (True, {"multiclass": f1("micro"), "multilabel": f1("micro")}),
        "log_loss": (False, {"multiclass": lambda _: _multiclass_log_loss, "multilabel": lambda _: _multilabel_log_loss}),
        "roc_auc": (True, {"multiclass": lambda _: _multiclass_auc, "multilabel": lambda _: _macro_auc}),
        "average_precision": (True, {"multilabel": lambda _: lambda t, p: skm.average_precision_score(t, p, average="macro")}),
        "quadratic_kappa": (True, {"multiclass": kappa}),
    }
    registry: dict[str, dict[str, Metric]] = {}
    for name, (greater, by_task) in table.items():
        registry[name] = {task: Metric(name, factory(task), greater) for task, factory in by_task.items()}
    return registry


METRICS = _build_registry()


def load_custom_metric(spec: str, folder: Path, greater_is_better: bool | None) -> Metric:
    """'metric.py:score' -> the function `score` defined in <folder>/metric.py."""
    if greater_is_better is None:
        raise SolverError(f"metric '{spec}': set greater_is_better: true or false in {Path(folder) / 'competition.yaml'}")
    return Metric(spec, load_function(spec, folder, "score", "metric", "(y_true, y_prob) -> float"), greater_is_better)


def get_metric(name: str, task: str, folder: Path | None = None, greater_is_better: bool | None = None) -> Metric:
    if ".py" in name:
        return load_custom_metric(name, folder or Path("."), greater_is_better)
    if name not in METRICS:
        raise SolverError(
            f"metric '{name}' is unknown ({did_you_mean(name, METRICS)}); or define one in the competition folder as 'metric.py:function'"
        )
    if task not in METRICS[name]:
        raise SolverError(
            f"metric '{name}' is not defined for a {task} task; valid for {task}: {', '.join(n for n, t in METRICS.items() if task in t)}"
        )
    return METRICS[name][task]
