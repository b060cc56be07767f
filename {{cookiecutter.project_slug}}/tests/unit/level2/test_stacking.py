import numpy as np
import pandas as pd
import pytest

from solver.base.errors import SolverError
from solver.competition.metrics import get_metric
from solver.config.level2 import LgbmSpec
from solver.level2.stack import min_data_in_leaf, stack_lgbm

# Small and quick: few rows, a coarse learning rate, and a short patience keep every stack under a second or two.
FAST = LgbmSpec(num_boost_round=300, early_stopping_rounds=20, learning_rate=0.1, num_threads=1, model="lgbm")
AUTO = FAST.model_copy(update=dict(model="auto"))
N, C, K = 800, 4, 5


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def complementary(seed: int = 0, n: int = N):
    """Two 'experiments': A sees classes 0 and 1 clearly, B sees classes 2 and 3; each is guessing on the other half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    onehot = np.eye(C)[y]
    strength_a = np.where(y < 2, 4.0, 0.0)[:, None]
    strength_b = np.where(y >= 2, 4.0, 0.0)[:, None]
    a = softmax(onehot * strength_a + rng.normal(0, 1, (n, C)))
    b = softmax(onehot * strength_b + rng.normal(0, 1, (n, C)))
    folds = np.arange(n) % K
    rng.shuffle(folds)
    return y, folds, a, b


def frame(*probs: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(np.hstack(probs), columns=[f"exp{m}:c{j}" for m in range(len(probs)) for j in range(C)])


def test_multiclass_stack_beats_complementary_inputs():
    y, folds, a, b = complementary()
    X = frame(a, b)
    oof, test, info = stack_lgbm(X, y, folds, X.iloc[:100], "multiclass", C, FAST, progress=False)
    assert oof.shape == (N, C) and test.shape == (100, C)
    np.testing.assert_allclose(test.sum(1), 1, atol=1e-9)
    np.testing.assert_allclose(oof.sum(1), 1, atol=1e-9)
    loss, acc = get_metric("log_loss", "multiclass"), get_metric("accuracy", "multiclass")
    assert loss(y, oof) <= min(loss(y, a), loss(y, b))
    assert acc(y, oof) >= max(acc(y, a), acc(y, b)) + 0.1  # each input is right on about 60%, together they cover all classes
    assert len(info["best_rounds"]) == K and all(r >= 1 for r in info["best_rounds"])
    assert set(info["feature_importance"]) == set(X.columns)  # names with ':' survive: LightGBM sees plain arrays


def test_multilabel_stack_shapes_and_constant_label():
    rng = np.random.default_rng(1)
    n, L = 600, 3
    folds = np.arange(n) % K
    y = (rng.random((n, L)) < 0.4).astype(int)
    y[:, 2] = 0
    y[(folds == 0) & (rng.random(n) < 0.3), 2] = 1  # positives only in fold 0: its training part sees label 2 constant
    p = 1 / (1 + np.exp(-(3 * (2 * y - 1) + rng.normal(0, 1.5, (n, L)))))
    X = pd.DataFrame(p, columns=["a", "b", "c"])
    oof, test, info = stack_lgbm(X, y, folds, X.iloc[:50], "multilabel", L, FAST, progress=False)
    assert oof.shape == (n, L) and test.shape == (50, L)
    assert ((oof >= 0) & (oof <= 1)).all()
    assert info["best_rounds"][0][2] == 0 and (oof[folds == 0, 2] == 0).all()  # training mean of an all-zero label
    assert all(len(r) == L for r in info["best_rounds"])
    assert get_metric("roc_auc", "multilabel")(y[:, :2], oof[:, :2]) > 0.9


def test_shuffled_labels_give_chance_accuracy():
    """Features carry no information about shuffled labels: an honest stack's OOF cannot beat chance."""
    y, folds, a, b = complementary(seed=2)
    y = np.random.default_rng(3).permutation(y)
    X = frame(a, b)
    oof, _, _ = stack_lgbm(X, y, folds, X.iloc[:10], "multiclass", C, FAST, progress=False)
    assert abs((oof.argmax(1) == y).mean() - 1 / C) <= 0.08


def test_fold_rounds_do_not_see_fold_labels():
    """Round count and OOF predictions for fold f must not change when only fold f's labels change."""
    y, folds, a, b = complementary(seed=4)
    X = frame(a, b)
    f = 2
    scrambled = y.copy()
    scrambled[folds == f] = np.random.default_rng(5).permutation(y[folds == f])
    scrambled[folds == f] = (scrambled[folds == f] + 1) % C  # make sure fold f's labels really differ
    oof1, _, info1 = stack_lgbm(X, y, folds, X.iloc[:10], "multiclass", C, FAST, progress=False)
    oof2, _, info2 = stack_lgbm(X, scrambled, folds, X.iloc[:10], "multiclass", C, FAST, progress=False)
    assert info1["best_rounds"][f] == info2["best_rounds"][f]
    np.testing.assert_array_equal(oof1[folds == f], oof2[folds == f])
    assert info1["best_rounds"] != info2["best_rounds"] or not np.array_equal(oof1, oof2)  # the other folds did see the change


def test_mismatched_columns_name_the_column():
    y, folds, a, b = complementary(n=100)
    X = frame(a, b)
    X_test = X.rename(columns={"exp1:c2": "exp9:c2"})
    with pytest.raises(SolverError, match="exp1:c2"):
        stack_lgbm(X, y, folds, X_test, "multiclass", C, FAST, progress=False)
    with pytest.raises(SolverError, match="first extra column 'exp1:c3'"):
        stack_lgbm(X, y, folds, X.iloc[:, :-1], "multiclass", C, FAST, progress=False)


def test_bad_rows_and_folds():
    y, folds, a, b = complementary(n=100)
    X = frame(a, b)
    with pytest.raises(SolverError, match="folds 99"):
        stack_lgbm(X, y, folds[:-1], X, "multiclass", C, FAST, progress=False)
    missing = X.copy()
    missing.iloc[7, 3] = np.nan
    with pytest.raises(SolverError, match="row 7"):
        stack_lgbm(missing, y, folds, X, "multiclass", C, FAST, progress=False)
    with pytest.raises(SolverError, match="objective"):
        stack_lgbm(X, y, folds, X, "multiclass", C, LgbmSpec(extra_params={"objective": "regression"}), progress=False)


def logits(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-6, 1))


def test_auto_chooses_per_fold_by_inner_cv_and_never_sees_the_fold_labels():
    """Two models with independent errors on the same signal: the sum of their logits is the best blend, the inner
    CV picks a logistic one, and the choice and the predictions for fold f stay the same when only fold f's labels change."""
    y, folds, _, _ = complementary(seed=4)
    rng = np.random.default_rng(10)
    a, b = (np.eye(C)[y] * 1.5 + rng.normal(0, 1, (N, C)) for _ in range(2))
    X = frame(a, b)
    f = 1
    scrambled = y.copy()
    scrambled[folds == f] = (y[folds == f] + 1) % C
    oof1, _, info1 = stack_lgbm(X, y, folds, X.iloc[:10], "multiclass", C, AUTO, progress=False)
    oof2, _, info2 = stack_lgbm(X, scrambled, folds, X.iloc[:10], "multiclass", C, AUTO, progress=False)
    assert all(set(losses) == {"logistic(C=0.01)", "logistic(C=0.1)", "logistic(C=1)", "lgbm"} for losses in info1["inner_cv_loss"])
    assert all(m == min(losses, key=losses.get) for m, losses in zip(info1["models"], info1["inner_cv_loss"]))
    assert sum(m.startswith("logistic") for m in info1["models"]) >= 3
    assert info1["models"][f] == info2["models"][f]
    np.testing.assert_array_equal(oof1[folds == f], oof2[folds == f])
    lgbm_only, _, _ = stack_lgbm(X, y, folds, X.iloc[:10], "multiclass", C, FAST, progress=False)
    loss = get_metric("log_loss", "multiclass")
    assert loss(y, oof1) <= loss(y, lgbm_only) + 1e-3  # chosen on inner CV: no worse than the LightGBM stack


def test_auto_stack_on_shuffled_labels_stays_at_chance():
    y, folds, a, b = complementary(seed=6)
    y = np.random.default_rng(7).permutation(y)
    X = frame(logits(a), logits(b))
    oof, _, _ = stack_lgbm(X, y, folds, X.iloc[:10], "multiclass", C, AUTO, progress=False)
    assert abs((oof.argmax(1) == y).mean() - 1 / C) <= 0.08


def test_a_noise_block_is_dropped_and_its_gain_reported():
    """Columns of noise offered as the optional (kNN) block: the logistic blends try without them, the inner CV
    says they do not help (knn_gain <= 0 within noise) and no fold keeps them."""
    y, folds, a, b = complementary(seed=8)
    X = frame(logits(a), logits(b))
    noise = pd.DataFrame(np.random.default_rng(9).normal(size=(N, 12)), columns=[f"knn_{i}" for i in range(12)])
    X = pd.concat([X, noise], axis=1)
    settings = AUTO.model_copy(update=dict(model="logistic", logistic_c=(1.0,)))
    _, _, info = stack_lgbm(X, y, folds, X.iloc[:10], "multiclass", C, settings, progress=False, optional_columns=list(noise.columns))
    assert all(set(losses) == {"logistic(C=1)", "logistic(C=1, no knn)"} for losses in info["inner_cv_loss"])
    assert info["knn_gain"] < 0.005
    assert sum("no knn" in m for m in info["models"]) >= 3


def test_multilabel_auto_stack_chooses_per_label():
    rng = np.random.default_rng(1)
    n, L = 400, 2
    folds = np.arange(n) % K
    y = (rng.random((n, L)) < 0.4).astype(int)
    p = 1 / (1 + np.exp(-(3 * (2 * y - 1) + rng.normal(0, 1.5, (n, L)))))
    X = pd.DataFrame(np.log(p / (1 - p)), columns=["a", "b"])
    oof, _, info = stack_lgbm(X, y, folds, X.iloc[:5], "multilabel", L, AUTO, progress=False)
    assert all(len(m) == L for m in info["models"]) and ((oof >= 0) & (oof <= 1)).all()
    assert get_metric("roc_auc", "multilabel")(y, oof) > 0.9


def test_min_data_in_leaf_grows_with_the_rows_unless_set():
    assert min_data_in_leaf(LgbmSpec(), 1000) == 20
    assert min_data_in_leaf(LgbmSpec(), 50_000) == 500
    assert min_data_in_leaf(LgbmSpec(min_data_in_leaf=7), 50_000) == 7


def test_unknown_stack_model_is_one_clear_error():
    y, folds, a, b = complementary(n=100)
    X = frame(a, b)
    with pytest.raises(SolverError, match="stack model 'ridge' is unknown"):
        stack_lgbm(X, y, folds, X, "multiclass", C, AUTO.model_copy(update=dict(model="ridge")), progress=False)


def test_weighted_blend_of_a_strong_and_a_weak_input_is_no_worse_than_the_strong_one():
    """A strong and a much weaker input (the USPS case): the one-weight-per-input blend is a candidate, its weight on
    the weak input is the smaller, and the stack's OOF is at least as accurate as the strong input alone."""
    rng = np.random.default_rng(11)
    y = rng.integers(0, C, N)
    folds = rng.permutation(np.arange(N) % K)
    strong = np.log(softmax(np.eye(C)[y] * 2.5 + rng.normal(0, 1, (N, C))))
    weak = np.log(softmax(np.eye(C)[y] * 0.6 + rng.normal(0, 1, (N, C))))
    X = frame(strong, weak)
    groups = [[f"exp{m}:c{j}" for j in range(C)] for m in range(2)]
    oof, _, info = stack_lgbm(X, y, folds, X.iloc[:10], "multiclass", C, AUTO, progress=False, blend_groups=groups)
    assert all(any(name.startswith("blend(") for name in losses) for losses in info["inner_cv_loss"])
    blends = [m for m in info["models"] if m.startswith("blend(")]
    assert blends and all(float(m[6:-1].split(", ")[0]) > float(m[6:-1].split(", ")[1]) for m in blends)
    assert (oof.argmax(1) == y).mean() >= (strong.argmax(1) == y).mean() - 0.005


def test_with_a_metric_the_candidate_with_the_best_inner_score_wins():
    """Accuracy-scored competitions choose the stack by inner-CV accuracy (log loss breaks ties), not by log loss."""
    y, folds, a, b = complementary(seed=12)
    X = frame(logits(a), logits(b))
    acc = get_metric("accuracy", "multiclass")
    _, _, info = stack_lgbm(X, y, folds, X.iloc[:10], "multiclass", C, AUTO, progress=False, metric=acc)
    for model, scores, losses in zip(info["models"], info["inner_cv_score"], info["inner_cv_loss"]):
        assert set(scores) == set(losses)
        top = max(scores.values())
        assert scores[model] == top and losses[model] == min(v for k, v in losses.items() if scores[k] == top)
