import numpy as np
import pytest

from solver.base.errors import SolverError
from solver.competition.metrics import get_metric
from solver.level2.ensemble import caruana_oof_fold_safe, caruana_weights, mean_ensemble, rank_average, weighted_average
from solver.runs.source import check_compatible

N, C = 400, 4


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def models(strengths: list[float], seed: int = 0):
    """Labels and one noisy 'experiment' per strength: larger strength, better model."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    onehot = np.eye(C)[y]
    return y, [softmax(onehot * s + rng.normal(0, 1.5, (N, C))) for s in strengths]


def test_mean_and_weighted_math():
    a, b = np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([[0.4, 0.6], [1.0, 0.0]])
    np.testing.assert_allclose(mean_ensemble([a, b]), [[0.3, 0.7], [0.8, 0.2]])
    np.testing.assert_allclose(weighted_average([a, b], np.array([3.0, 1.0])), 0.75 * a + 0.25 * b)
    np.testing.assert_allclose(weighted_average([a, b], np.array([1.0, 0.0])), a)
    with pytest.raises(SolverError, match="2 weights for 3"):
        weighted_average([a, b, a], np.array([1.0, 1.0]))
    with pytest.raises(SolverError, match="non-negative"):
        weighted_average([a, b], np.array([1.0, -1.0]))
    with pytest.raises(SolverError, match="shape"):
        mean_ensemble([a, b[:1]])


def test_rank_average():
    _, probs = models([1.0, 2.0])
    r = rank_average(probs)
    assert r.shape == (N, C) and r.min() >= 0 and r.max() <= 1
    np.testing.assert_allclose(rank_average([np.array([[0.1], [0.9], [0.5]])]), [[0.0], [1.0], [0.5]])
    # A monotone transform of an input leaves the rank average unchanged: calibration does not matter.
    np.testing.assert_allclose(rank_average([probs[0], probs[1]]), rank_average([probs[0], probs[1] ** 3]))


@pytest.mark.parametrize("name", ["log_loss", "accuracy"])
def test_caruana_prefers_better_model_and_never_loses(name):
    metric = get_metric(name, "multiclass")
    y, probs = models([0.5, 3.0, 1.5, 2.5], seed=1)
    w = caruana_weights(probs, y, metric, iterations=30)
    assert w.sum() == pytest.approx(1) and (w >= 0).all()
    assert w[1] == w.max() and w[1] > w[0]
    blend = weighted_average(probs, w)
    best_single = max(probs, key=lambda p: metric(y, p) * (1 if metric.greater_is_better else -1))
    assert not metric.better(metric(y, best_single), metric(y, blend))


def test_caruana_deterministic_ties_and_zero_iterations():
    metric = get_metric("log_loss", "multiclass")
    y, (p,) = models([2.0])
    np.testing.assert_array_equal(caruana_weights([p, p, p], y, metric), [1, 0, 0])  # identical models: lowest index
    y, probs = models([1.0, 3.0])
    np.testing.assert_array_equal(caruana_weights(probs, y, metric, iterations=0), [0, 1])
    np.testing.assert_allclose(caruana_weights(probs, y, metric, iterations=0, init_best=2), [0.5, 0.5])


def test_caruana_fold_safe():
    metric = get_metric("log_loss", "multiclass")
    y, probs = models([1.0, 2.0, 2.0, 0.5], seed=2)
    folds = np.arange(N) % 4
    oof, w = caruana_oof_fold_safe(probs, y, folds, metric, iterations=20)
    assert oof.shape == (N, C)
    np.testing.assert_allclose(oof.sum(1), 1)
    np.testing.assert_allclose(w, caruana_weights(probs, y, metric, iterations=20))
    # Fitted on its own rows the blend can only look better than the honest fold-safe estimate.
    assert metric(y, weighted_average(probs, w)) <= metric(y, oof) + 1e-12
    # Fold 0's blend depends only on the other folds' labels.
    y2 = y.copy()
    y2[folds == 0] = (y2[folds == 0] + 1) % C
    oof2, _ = caruana_oof_fold_safe(probs, y2, folds, metric, iterations=20)
    np.testing.assert_array_equal(oof[folds == 0], oof2[folds == 0])


def test_check_compatible():
    check_compatible(["a", "b"], [["cat", "dog"], ["cat", "dog"]], ["h1", "h1"])
    with pytest.raises(SolverError, match=r"'exp1' and 'exp2'.*class 1 is 'dog' in 'exp1' but 'fox' in 'exp2'"):
        check_compatible(["exp1", "exp2"], [["cat", "dog"], ["cat", "fox"]], ["h", "h"])
    with pytest.raises(SolverError, match="different order"):
        check_compatible(["exp1", "exp2"], [["cat", "dog"], ["dog", "cat"]], ["h", "h"])
    with pytest.raises(SolverError, match="'exp3' has class 'eel' that 'exp1' lacks"):
        check_compatible(["exp1", "exp3"], [["cat", "dog"], ["cat", "dog", "eel"]], ["h", "h"])
    with pytest.raises(SolverError, match="'exp1' and 'exp2' were trained on different folds files"):
        check_compatible(["exp1", "exp2"], [["cat"], ["cat"]], ["h1", "h2"])


@pytest.mark.parametrize("blend", ["mean", "rank", "weighted", "caruana"])
def test_nan_predictions_name_their_source(blend):
    y, (a, b) = models([1.0, 2.0])
    b = b.copy()
    b[[3, 7], 1] = np.nan
    names = ["exp001", "exp002/tta8"]
    run = {
        "mean": lambda: mean_ensemble([a, b], names=names),
        "rank": lambda: rank_average([a, b], names=names),
        "weighted": lambda: weighted_average([a, b], np.array([1.0, 1.0]), names=names),
        "caruana": lambda: caruana_oof_fold_safe([a, b], y, np.arange(N) % 2, get_metric("accuracy", "multiclass"), names=names),
    }[blend]
    with pytest.raises(SolverError, match=r"the predictions of 'exp002/tta8' contain NaN or infinite values \(2 of them\)"):
        run()


def _two_sources_and_an_ensemble(tmp_path, nan_in_exp002_test: bool = False):
    """runs/synth/exp001 and exp002 (random OOF/test probabilities) and synth/ensembles/ens.yaml over both."""
    import pandas as pd
    import yaml

    from solver.competition.contract import Competition
    from solver.competition.folds import folds_hash, load_folds
    from tests.synthetic import make_competition

    make_competition(tmp_path, n_train=12, n_test=4)
    comp = Competition.load(tmp_path, "synth")
    folds, rng = load_folds(comp), np.random.default_rng(0)
    for name in ("exp001", "exp002"):
        folder = comp.runs_dir / name
        folder.mkdir()
        for split, ids in (("oof", comp.read_train()["id"]), ("test", comp.read_test()["id"])):
            df = pd.DataFrame(rng.dirichlet(np.ones(3), len(ids)), columns=comp.classes)
            df.insert(0, "id", ids.to_numpy())
            if nan_in_exp002_test and name == "exp002" and split == "test":
                df.loc[2, "dog"] = np.nan
            df.to_csv(folder / f"{split}.csv", index=False)
        (folder / "config.yaml").write_text(yaml.safe_dump({"classes": comp.classes, "folds_hash": folds_hash(comp)}))
    (tmp_path / "synth/ensembles").mkdir()
    (tmp_path / "synth/ensembles/ens.yaml").write_text(yaml.safe_dump({"inputs": ["exp001", "exp002"]}))
    assert len(folds) == 12
    return comp


def test_the_ensemble_stage_names_the_file_with_nan(tmp_path):
    from solver.level2.stages import ensemble_stage

    _two_sources_and_an_ensemble(tmp_path, nan_in_exp002_test=True)
    with pytest.raises(SolverError, match=r"the predictions of 'exp002/test\.csv' contain NaN or infinite values \(1 of them\)"):
        ensemble_stage(tmp_path, "synth", "ens")


def test_an_ensemble_made_again_keeps_its_old_submission_as_stale(tmp_path):
    """Rerunning a stage after its config changed replaces its predictions: the submission written from the old
    ones is kept as submission.stale.csv, never left beside the new predictions as if it were theirs."""
    from solver.level2.stages import ensemble_stage
    from solver.submit.submission import make_submission

    comp = _two_sources_and_an_ensemble(tmp_path)
    ensemble_stage(tmp_path, "synth", "ens")
    old = make_submission(comp, comp.runs_dir / "ens").read_bytes()
    (tmp_path / "synth/ensembles/ens.yaml").write_text("inputs: [exp001, exp002]\nmethod: rank\n")
    ensemble_stage(tmp_path, "synth", "ens")
    assert (comp.runs_dir / "ens/submission.stale.csv").read_bytes() == old
    assert not (comp.runs_dir / "ens/submission.csv").exists()
