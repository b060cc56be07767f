"""`make adapt` as a stage: prior shift, multilabel thresholds and head tuning write sources with leaderboard rows,
submissions follow the thresholds, and bad configs are clear errors."""

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import f1_score, log_loss

from solver.adapt.prior_shift import adjust, apply_temperature, fit_temperature
from solver.adapt.stage import adapt_stage
from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.competition.folds import folds_hash, load_folds
from solver.runs.leaderboard import collect_scores
from solver.submit.submission import make_submission
from solver.train.run import train_experiment
from tests.conftest import REPO, run_solver
from tests.synthetic import make_competition


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))


def _fake_source(comp: Competition, name: str, oof: np.ndarray, test: np.ndarray, classes=None) -> None:
    """A source as a finished stage leaves it: oof.csv (with folds), test.csv, config.yaml."""
    folder = comp.runs_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    classes = classes or comp.classes
    train, test_df = comp.read_train(), comp.read_test()
    oof_df = pd.DataFrame(oof, columns=classes)
    oof_df.insert(0, "fold", load_folds(comp))
    oof_df.insert(0, "id", train["id"].to_numpy())
    oof_df.to_csv(folder / "oof.csv", index=False)
    test_out = pd.DataFrame(test, columns=classes)
    test_out.insert(0, "id", test_df["id"].to_numpy())
    test_out.to_csv(folder / "test.csv", index=False)
    _write(folder / "config.yaml", {"classes": classes, "folds_hash": folds_hash(comp)})


def _fold_tests(comp: Competition, name: str, tests: list[np.ndarray]) -> None:
    """Each fold model's own test predictions, as an experiment keeps them in fold<k>/test.csv."""
    for k, test in enumerate(tests):
        frame = pd.DataFrame(test, columns=comp.classes)
        frame.insert(0, "id", comp.read_test()["id"].to_numpy())
        (comp.runs_dir / name / f"fold{k}").mkdir(parents=True, exist_ok=True)
        frame.to_csv(comp.runs_dir / name / f"fold{k}" / "test.csv", index=False)


def _posteriors(labels: np.ndarray, num_classes: int, train_priors: np.ndarray, rng) -> np.ndarray:
    """Calibrated posteriors (for train_priors) of 1-D Gaussian classes."""
    means = np.arange(num_classes) * 1.5
    x = rng.normal(means[labels], 1.0)
    joint = np.exp(-0.5 * (x[:, None] - means[None, :]) ** 2) * train_priors
    return joint / joint.sum(axis=1, keepdims=True)


def _multiclass(tmp_path, n_test=600):
    make_competition(tmp_path, n_train=300, n_test=n_test, metric="log_loss")
    comp = Competition.load(tmp_path, "synth")
    y = comp.encode_targets(comp.read_train())
    rng = np.random.default_rng(0)
    train_priors = np.bincount(y, minlength=3) / len(y)
    hidden = rng.choice(3, n_test, p=[0.7, 0.2, 0.1])  # the test set's classes, shifted; never written anywhere
    test = _posteriors(hidden, 3, train_priors, rng)
    _fake_source(comp, "base", _posteriors(y, 3, train_priors, rng), test)
    _fold_tests(comp, "base", [test, test])
    return comp, train_priors, hidden


def test_prior_shift_estimates_the_test_priors_and_adds_a_leaderboard_row(tmp_path):
    comp, train_priors, hidden = _multiclass(tmp_path)
    _write(comp.folder / "adapt/em.yaml", {"source": "base", "method": "prior_shift"})
    score = adapt_stage(tmp_path, "synth", "em")
    estimated = np.array(list(score["test_priors"].values()))
    true = np.bincount(hidden, minlength=3) / len(hidden)
    assert np.abs(estimated - true).mean() < 0.03, (estimated, true)
    assert score["kind"] == "adapt" and score["model"] == "prior_shift(base)"
    board = collect_scores(comp)
    assert board.set_index("source").loc["em", "kind"] == "adapt"
    # Given priors: the test predictions are re-weighted to them; the OOF stays as it was.
    assert all(0.8 < t < 1.25 for t in score["temperature"]) and len(score["temperature"]) == 2  # calibrated already
    given = {"source": "base", "method": "prior_shift", "priors": {"cat": 0.5, "dog": 0.3, "fox": 0.2}, "calibrate": "none"}
    _write(comp.folder / "adapt/given.yaml", given)
    adapt_stage(tmp_path, "synth", "given")
    base_test = pd.read_csv(comp.runs_dir / "base/test.csv")[comp.classes].to_numpy()
    given_test = pd.read_csv(comp.runs_dir / "given/test.csv")[comp.classes].to_numpy()
    assert np.allclose(given_test, adjust(base_test, train_priors, [0.5, 0.3, 0.2]))
    assert np.allclose(pd.read_csv(comp.runs_dir / "given/oof.csv")[comp.classes], pd.read_csv(comp.runs_dir / "base/oof.csv")[comp.classes])


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_prior_shift_calibrates_each_fold_model_before_averaging(tmp_path):
    """Two over-confident fold models that disagree: each is sharper than the truth (its OOF temperature is above 1),
    their average is softer (it wants a temperature below 1). The temperature fitted on OOF and applied to the average
    made the test worse than not calibrating; calibrating each fold's test with its own temperature makes it better."""
    n = 1000
    make_competition(tmp_path, n_train=n, n_test=n, metric="log_loss")
    comp = Competition.load(tmp_path, "synth")
    y, folds = comp.encode_targets(comp.read_train()), load_folds(comp)
    rng = np.random.default_rng(3)
    hidden = rng.integers(0, 3, n)  # the test's labels, never written anywhere

    def features(labels):
        return np.eye(3)[labels] * 2.0 + rng.normal(0, 1.0, (len(labels), 3))

    x, x_test = features(y), features(hidden)
    models = [2.0 * (np.eye(3) + rng.normal(0, 0.3, (3, 3))) for _ in range(2)]  # each fold model's own error
    oof = np.empty((n, 3))
    for k, model in enumerate(models):
        oof[folds == k] = _softmax(x[folds == k] @ model)
    tests = [_softmax(x_test @ model) for model in models]
    _fake_source(comp, "base", oof, np.mean(tests, axis=0))
    _fold_tests(comp, "base", tests)
    _write(comp.folder / "adapt/cal.yaml", {"source": "base", "method": "prior_shift", "priors": [1 / 3] * 3})  # adjust: the identity
    adapt_stage(tmp_path, "synth", "cal")
    nll = {
        "raw": log_loss(hidden, np.mean(tests, axis=0), labels=range(3)),
        "oof_temperature": log_loss(hidden, apply_temperature(np.mean(tests, axis=0), fit_temperature(oof, y)), labels=range(3)),
        "per_fold": log_loss(hidden, pd.read_csv(comp.runs_dir / "cal/test.csv")[comp.classes].to_numpy(), labels=range(3)),
    }
    best = fit_temperature(np.mean(tests, axis=0), hidden)
    print(f"T on OOF {fit_temperature(oof, y):.2f}, best T for the averaged test {best:.2f}; test NLL", nll)
    assert nll["oof_temperature"] > nll["raw"] > nll["per_fold"], nll


@pytest.mark.parametrize(
    "options, message",
    [
        ({"priors": [0.5, 0.5]}, r"key 'priors': 2 values for 3 classes; give one per class in the order cat, dog, fox"),
        ({"priors": [0.5, 0.3, 0.3]}, r"key 'priors': the values sum to 1.1, not 1"),
        ({"priors": [1.2, -0.1, -0.1]}, r"key 'priors': class 'dog' has -0.1; values must be non-negative"),
        ({"priors": {"cat": 0.5, "dgo": 0.5}}, r"key 'priors': 'dgo' is not a class of synth \(did you mean 'dog'"),
        ({"method": "thresholds"}, r"key 'method': thresholds are for multilabel competitions; synth is multiclass"),
        ({"at_least_one": True}, r"'at_least_one' is an option of method thresholds, not of prior_shift"),
        ({"method": "head_tuning"}, r"head_tuning needs a target set"),
        ({"source": "nope"}, r"source 'nope' has no oof.csv"),
    ],
)
def test_bad_adapt_configs_are_clear_errors(tmp_path, options, message):
    comp, _, _ = _multiclass(tmp_path, n_test=30)
    path = comp.folder / "adapt/bad.yaml"
    _write(path, {"source": "base", "method": "prior_shift", **options})
    with pytest.raises(SolverError, match=message) as err:
        adapt_stage(tmp_path, "synth", "bad")
    assert "bad.yaml" in str(err.value) or "nope" in str(err.value)
    assert not (comp.runs_dir / "bad").exists()  # nothing written


def test_a_source_with_another_label_set_is_refused(tmp_path):
    comp, _, _ = _multiclass(tmp_path, n_test=30)
    _fake_source(comp, "other", np.full((300, 3), 1 / 3), np.full((30, 3), 1 / 3), classes=["cat", "dog", "wolf"])
    _write(comp.folder / "adapt/a.yaml", {"source": "other", "method": "prior_shift"})
    with pytest.raises(SolverError, match="class list differs from synth's current one"):
        adapt_stage(tmp_path, "synth", "a")
    with pytest.raises(SolverError, match=r"adapt/missing.yaml not found; adapt configs of synth: a"):
        adapt_stage(tmp_path, "synth", "missing")


def _miscalibrated_multilabel(tmp_path, **contract):
    make_competition(tmp_path, task="multilabel", n_train=400, n_test=100, seed=1, **contract)
    comp = Competition.load(tmp_path, "synth")
    y = comp.encode_targets(comp.read_train())
    rng = np.random.default_rng(2)
    bias = np.array([-2.5, -1.8, 1.2, 2.0])  # per label: 0.5 cuts far from the best threshold

    def probs(labels):
        return 1 / (1 + np.exp(-(rng.normal(np.where(labels == 1, 1.5, -1.5), 1.0) + bias)))

    _fake_source(comp, "base", probs(y), probs(rng.random((100, 4)) < 0.4))
    return comp, y


def test_thresholds_improve_macro_f1_on_oof_and_drive_the_submission(tmp_path):
    comp, y = _miscalibrated_multilabel(tmp_path)
    _write(comp.folder / "adapt/th.yaml", {"source": "base", "method": "thresholds", "at_least_one": True})
    base_cv = comp.metric(y, pd.read_csv(comp.runs_dir / "base/oof.csv")[comp.classes].to_numpy())
    score = adapt_stage(tmp_path, "synth", "th")
    assert comp.metric.name == "macro_f1" and score["cv"] > base_cv + 0.1, (base_cv, score["cv"])
    config = yaml.safe_load((comp.runs_dir / "th/config.yaml").read_text())
    assert config["decision_threshold"] == 0.5 and len(config["fold_thresholds"]) == 2
    sub = pd.read_csv(make_submission(comp, comp.runs_dir / "th"), dtype=str, keep_default_na=False)
    raw = pd.read_csv(comp.runs_dir / "base/test.csv").set_index("id").loc[sub["id"], comp.classes].to_numpy()
    t = np.array([config["test_thresholds"][c] for c in comp.classes])
    chosen = raw > t
    empty = ~chosen.any(axis=1)
    chosen[empty, (raw[empty] / t).argmax(axis=1)] = True  # at_least_one: the label nearest to passing its threshold
    expected = [" ".join(c for c, keep in zip(comp.classes, row) if keep) for row in chosen]
    assert sub["Target"].tolist() == expected
    assert chosen.sum() != (raw > 0.5).sum()  # the thresholds, not 0.5, made these labels


def test_cv_scores_the_decisions_the_submission_makes(tmp_path):
    """One threshold: the competition's submission.threshold cuts the probabilities in CV and in `make submit`, and a
    thresholds source stores its decisions on a scale cut there too."""
    comp, y = _miscalibrated_multilabel(tmp_path, submission={"threshold": 0.3})
    oof = pd.read_csv(comp.runs_dir / "base/oof.csv")[comp.classes].to_numpy()
    assert comp.metric(y, oof) == pytest.approx(f1_score(y, oof > 0.3, average="macro"))
    base_sub = pd.read_csv(make_submission(comp, comp.runs_dir / "base"), dtype=str, keep_default_na=False)
    raw = pd.read_csv(comp.runs_dir / "base/test.csv").set_index("id").loc[base_sub["id"], comp.classes].to_numpy()
    assert base_sub["Target"].tolist() == [" ".join(c for c, keep in zip(comp.classes, row) if keep) for row in raw > 0.3]
    _write(comp.folder / "adapt/th.yaml", {"source": "base", "method": "thresholds"})
    score = adapt_stage(tmp_path, "synth", "th")
    config = yaml.safe_load((comp.runs_dir / "th/config.yaml").read_text())
    assert config["decision_threshold"] == 0.3
    fitted = np.array(config["fold_thresholds"])
    folds = load_folds(comp)
    assert score["cv"] == pytest.approx(f1_score(y, oof > fitted[folds], average="macro"))  # the fold-safe thresholds' decisions
    sub = pd.read_csv(make_submission(comp, comp.runs_dir / "th"), dtype=str, keep_default_na=False)
    t = np.array([config["test_thresholds"][c] for c in comp.classes])
    assert sub["Target"].tolist() == [" ".join(c for c, keep in zip(comp.classes, row) if keep) for row in raw > t]


def test_expected_frequencies_set_the_test_label_rates(tmp_path):
    comp, _ = _miscalibrated_multilabel(tmp_path)
    frequencies = {"0": 0.1, "1": 0.2, "2": 0.3, "3": 0.6}
    _write(comp.folder / "adapt/freq.yaml", {"source": "base", "method": "thresholds", "expected_frequencies": frequencies})
    adapt_stage(tmp_path, "synth", "freq")
    test = pd.read_csv(comp.runs_dir / "freq/test.csv")[comp.classes].to_numpy()
    assert np.allclose((test > 0.5).mean(axis=0), list(frequencies.values()), atol=0.011)
    _write(comp.folder / "adapt/bad.yaml", {"source": "base", "method": "thresholds", "expected_frequencies": [0.1, 1.5, 0.2, 0.3]})
    with pytest.raises(SolverError, match=r"bad.yaml: key 'expected_frequencies': label '1' has 1.5"):
        adapt_stage(tmp_path, "synth", "bad")
    _write(comp.folder / "adapt/bad.yaml", {"source": "base", "method": "thresholds", "metric": "macro_f2"})
    with pytest.raises(SolverError, match=r"bad.yaml: key 'metric': metric 'macro_f2' is unknown \(did you mean 'macro_f1'"):
        adapt_stage(tmp_path, "synth", "bad")


def test_thresholds_end_to_end_on_a_trained_multilabel_competition(tmp_path, repo):
    """Train a tiny multilabel competition, `python -m solver adapt` thresholds, submit: the submission uses the thresholds."""
    make_competition(tmp_path, task="multilabel", n_train=48, n_test=16)
    train_experiment(tmp_path, "synth", "tiny")
    _write(tmp_path / "synth/adapt/th.yaml", {"source": "tiny", "method": "thresholds", "at_least_one": True})
    done = run_solver("adapt", "--root", str(tmp_path), "--comp", "synth", "--name", "th")
    assert done.returncode == 0, done.stderr
    comp = Competition.load(tmp_path, "synth")
    sub = pd.read_csv(make_submission(comp, tmp_path / "runs/synth/th"), dtype=str, keep_default_na=False)  # what `make submit` writes
    assert (sub["Target"].str.len() > 0).all()  # at_least_one
    t = yaml.safe_load((tmp_path / "runs/synth/th/config.yaml").read_text())["test_thresholds"]
    raw = pd.read_csv(tmp_path / "runs/synth/tiny/test.csv").set_index("id").loc[sub["id"]]
    for (_, row), labels in zip(raw.iterrows(), sub["Target"]):
        above = {c for c in comp.classes if row[c] > t[c]}
        assert set(labels.split()) == (above or {max(comp.classes, key=lambda c: row[c] / t[c])})


def test_head_tuning_from_pseudo_labels_and_a_labelled_subset(tmp_path):
    make_competition(tmp_path, n_train=48, n_test=16)
    train_experiment(tmp_path, "synth", "tiny")
    comp = Competition.load(tmp_path, "synth")
    test_ids = comp.read_test()["id"]
    pd.DataFrame({"id": [test_ids[0], test_ids[1], "s000"], "label": ["cat", "dog", ""]}).to_csv(tmp_path / "subset.csv", index=False)
    _write(
        comp.folder / "adapt/head.yaml", {"source": "tiny", "method": "head_tuning", "confidence": 0.4, "labelled_subset": "subset.csv", "epochs": 5}
    )
    score = adapt_stage(tmp_path, "synth", "head")
    assert score["kind"] == "adapt" and score["init"] == "model"
    for fold in score["folds_target"]:
        assert fold["target_test_rows"] >= 2  # the two labelled test rows at least
        assert fold["target_train_rows"] == (1 if fold["fold"] != load_folds(comp)[0] else 0)  # s000 only where it is not in the fold
    oof = pd.read_csv(comp.runs_dir / "head/oof.csv")
    assert np.allclose(oof[comp.classes].sum(axis=1), 1, atol=1e-5)
    pd.DataFrame({"id": [test_ids[0]], "label": ["wolf"]}).to_csv(tmp_path / "subset.csv", index=False)
    with pytest.raises(SolverError, match=r"subset.csv: row 2 has label 'wolf', which is not in the class list"):
        adapt_stage(tmp_path, "synth", "head")
    _write(comp.folder / "adapt/prior.yaml", {"source": "tiny/nope", "method": "head_tuning", "confidence": 0.9})
    with pytest.raises(SolverError, match="source 'tiny/nope' has no oof.csv"):
        adapt_stage(tmp_path, "synth", "prior")


@pytest.mark.skipif(not (REPO / "digits").is_dir(), reason="the repo was made without the digits demo")
def test_the_demo_adapt_configs_are_valid():
    from solver.config.adapt import AdaptConfig
    from solver.config.loader import read_yaml, validate

    paths = sorted((REPO / "digits/adapt").glob("*.yaml"))
    assert paths
    for path in paths:
        assert validate(AdaptConfig, read_yaml(path), str(path)).source == "exp001_resnet10t"
