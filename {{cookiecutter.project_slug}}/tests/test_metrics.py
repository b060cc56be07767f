import numpy as np
import pytest
from sklearn import metrics as skm

from solver.errors import SolverError
from solver.metrics import METRICS, get_metric

rng = np.random.default_rng(0)
P = rng.dirichlet(np.ones(4), 50)
Y = rng.integers(0, 4, 50)
PL = rng.random((50, 3))
YL = (rng.random((50, 3)) < 0.5).astype(int)


def test_multiclass_metrics_match_sklearn():
    assert get_metric("accuracy", "multiclass")(Y, P) == skm.accuracy_score(Y, P.argmax(1))
    assert get_metric("macro_f1", "multiclass")(Y, P) == pytest.approx(skm.f1_score(Y, P.argmax(1), average="macro"))
    assert get_metric("log_loss", "multiclass")(Y, P) == pytest.approx(skm.log_loss(Y, P, labels=range(4)))
    assert get_metric("roc_auc", "multiclass")(Y, P) == pytest.approx(skm.roc_auc_score(Y, P, multi_class="ovr", average="macro"))


def test_multilabel_metrics_match_sklearn():
    assert get_metric("macro_f1", "multilabel")(YL, PL) == pytest.approx(skm.f1_score(YL, PL > 0.5, average="macro"))
    assert get_metric("log_loss", "multilabel")(YL, PL) == pytest.approx(np.mean([skm.log_loss(YL[:, j], PL[:, j]) for j in range(3)]))
    assert get_metric("average_precision", "multilabel")(YL, PL) == pytest.approx(skm.average_precision_score(YL, PL))


def test_direction_and_better():
    loss, acc = get_metric("log_loss", "multiclass"), get_metric("accuracy", "multiclass")
    assert loss.better(0.1, 0.2) and not loss.better(0.3, 0.2)
    assert acc.better(0.9, 0.8) and acc.better(0.1, None)


def test_every_registered_metric_runs():
    for name, by_task in METRICS.items():
        for task, metric in by_task.items():
            value = metric(Y, P) if task == "multiclass" else metric(YL, PL)
            assert np.isfinite(value), name


def test_unknown_or_wrong_task_metric_is_a_clear_error():
    with pytest.raises(SolverError, match="did you mean 'accuracy'"):
        get_metric("acuracy", "multiclass")
    with pytest.raises(SolverError, match="not defined for a multiclass task"):
        get_metric("average_precision", "multiclass")


def test_custom_metric_from_the_competition_folder(tmp_path):
    (tmp_path / "metric.py").write_text(
        "import numpy as np\n\n\ndef top2(y_true, y_prob):\n"
        "    top = np.argsort(-y_prob, 1)[:, :2]\n"
        "    return float((top == y_true[:, None]).any(1).mean())\n"
    )
    metric = get_metric("metric.py:top2", "multiclass", tmp_path, greater_is_better=True)
    assert metric(Y, P) >= get_metric("accuracy", "multiclass")(Y, P)
    with pytest.raises(SolverError, match="greater_is_better"):
        get_metric("metric.py:top2", "multiclass", tmp_path, None)
    with pytest.raises(SolverError, match="defines no function 'nope'; write nope"):
        get_metric("metric.py:nope", "multiclass", tmp_path, True)
