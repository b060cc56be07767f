import numpy as np
import pytest
from sklearn import metrics as skm

from solver.base.errors import SolverError
from solver.competition.metrics import METRICS, get_metric

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


def test_quadratic_kappa_weighs_distances_over_every_class():
    # Classes 2 and 3 are absent from truth and prediction; the two errors (1 <-> 4) are still 3 classes apart,
    # not 1 apart as among the present labels {0, 1, 4} (which scored 0.75).
    y = np.array([0, 0, 1, 1, 4, 4])
    pred = np.array([0, 0, 4, 1, 1, 4])
    kappa = get_metric("quadratic_kappa", "multiclass")(y, np.eye(5)[pred])
    assert kappa == pytest.approx(0.4808, abs=1e-4)
    assert kappa == pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic", labels=range(5)))


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_macro_f1_leaves_out_labels_absent_from_truth_and_prediction(task):
    """One convention for both tasks (sklearn's zero_division=np.nan): a label nobody has and nobody predicts is not
    averaged in, so a perfect prediction scores 1.0 whatever labels the fold happens to lack."""
    f1 = get_metric("macro_f1", task)
    if task == "multiclass":
        y = np.array([0, 1, 1, 0])  # class 2 absent
        perfect, one_wrong = np.eye(3)[y], np.eye(3)[[0, 1, 0, 0]]
        expected = skm.f1_score(y, [0, 1, 0, 0], average="macro")
    else:
        y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])  # label 2 absent
        perfect, one_wrong = y.astype(float), np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], float)
        expected = np.mean([1.0, skm.f1_score(y[:, 1], one_wrong[:, 1])])
        assert f1(np.zeros((3, 2)), np.zeros((3, 2))) == 1.0  # nothing to find, nothing predicted
    assert f1(y, perfect) == 1.0
    assert f1(y, one_wrong) == pytest.approx(expected)


def test_multilabel_metrics_cut_at_the_given_threshold():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    probs = np.array([[0.4, 0.1], [0.2, 0.35], [0.6, 0.45]])
    assert get_metric("macro_f1", "multilabel")(y, probs) < 1.0  # cut at 0.5 misses three labels
    assert get_metric("macro_f1", "multilabel", threshold=0.3)(y, probs) == 1.0
    assert get_metric("accuracy", "multilabel", threshold=0.3)(y, probs) == 1.0
    assert get_metric("macro_f1", "multiclass", threshold=0.3)(np.array([0, 1]), np.eye(2)) == 1.0  # argmax: no threshold
