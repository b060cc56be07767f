"""Competition metrics by name, and custom metrics defined in a competition folder.

Every metric takes (y_true, y_prob):
  multiclass: y_true (N,) class indices, y_prob (N, C) probabilities
  multilabel: y_true (N, C) 0/1,         y_prob (N, C) probabilities
Label-based metrics cut multilabel probabilities at `threshold` (the competition's submission.threshold, so CV
scores the decisions the submission makes) and take the argmax for multiclass.

Macro F1 convention (multiclass and multilabel alike): a label absent from both the truth and the prediction of the
rows scored has no F1 and is left out of the average (sklearn's zero_division=np.nan), so a perfect prediction scores
1.0 on any fold. On a leaderboard test set where every label occurs this is exactly sklearn's f1_score(average="macro").
Quadratic kappa weighs an error by its distance over the full class list, not among the classes that happen to occur.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from solver.base.custom import load_function
from solver.base.errors import SolverError, did_you_mean

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def _sklearn_metrics():
    """sklearn.metrics, imported when a score is computed: importing sklearn takes about 1.5 s, and the verbs that
    only read a contract (submit, leaderboard, check-data, new-competition) never score."""
    from sklearn import metrics

    return metrics


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


DEFAULT_THRESHOLD = 0.5


def _hard(y_prob: np.ndarray, task: str, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    return y_prob.argmax(1) if task == "multiclass" else (y_prob > threshold).astype(int)


def _macro_f1(y_true, y_hard, labels) -> float:
    score = _sklearn_metrics().f1_score(y_true, y_hard, labels=labels, average="macro", zero_division=np.nan)
    return 1.0 if np.isnan(score) else float(score)  # no label anywhere and none predicted: nothing was wrong


def _multiclass_log_loss(y_true, y_prob):
    return _sklearn_metrics().log_loss(y_true, np.clip(y_prob, 1e-15, 1), labels=np.arange(y_prob.shape[1]))


def _multilabel_log_loss(y_true, y_prob):
    p = np.clip(y_prob, 1e-15, 1 - 1e-15)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


def _macro_auc(y_true, y_prob):
    # Labels without both classes in y_true have no AUC; average over the others (as Kaggle does).
    scores = [_sklearn_metrics().roc_auc_score(y_true[:, j], y_prob[:, j]) for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
    return float(np.mean(scores)) if scores else float("nan")


def _multiclass_auc(y_true, y_prob):
    onehot = np.eye(y_prob.shape[1])[y_true]
    return _macro_auc(onehot, y_prob)


def _build_registry(threshold: float = DEFAULT_THRESHOLD) -> dict[str, dict[str, Metric]]:
    def hard(p, task):
        return _hard(p, task, threshold)

    def macro_f1(task):
        return lambda t, p: _macro_f1(t, hard(p, task), np.arange(p.shape[1]) if task == "multiclass" else None)

    def micro_f1(task):
        return lambda t, p: _sklearn_metrics().f1_score(t, hard(p, task), average="micro", zero_division=0)

    def accuracy(task):
        return lambda t, p: _sklearn_metrics().accuracy_score(t, hard(p, task))

    def kappa(task):
        return lambda t, p: _sklearn_metrics().cohen_kappa_score(t, hard(p, task), weights="quadratic", labels=np.arange(p.shape[1]))

    # name -> (greater_is_better, {task: factory})
    table = {
        "accuracy": (True, {"multiclass": accuracy, "multilabel": accuracy}),
        "macro_f1": (True, {"multiclass": macro_f1, "multilabel": macro_f1}),
        "micro_f1": (True, {"multiclass": micro_f1, "multilabel": micro_f1}),
        "log_loss": (False, {"multiclass": lambda _: _multiclass_log_loss, "multilabel": lambda _: _multilabel_log_loss}),
        "roc_auc": (True, {"multiclass": lambda _: _multiclass_auc, "multilabel": lambda _: _macro_auc}),
        "average_precision": (True, {"multilabel": lambda _: lambda t, p: _sklearn_metrics().average_precision_score(t, p, average="macro")}),
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


def get_metric(
    name: str, task: str, folder: Path | None = None, greater_is_better: bool | None = None, threshold: float = DEFAULT_THRESHOLD
) -> Metric:
    """threshold: where label-based multilabel metrics cut the probabilities (a custom metric gets the probabilities)."""
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
    return (METRICS if threshold == DEFAULT_THRESHOLD else _build_registry(threshold))[name][task]
