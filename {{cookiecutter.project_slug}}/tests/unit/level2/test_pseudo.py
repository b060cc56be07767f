"""Fold-safe pseudo-labels (solver/level2/pseudo.py): a source like any other, and no leak of fold k's labels into fold k."""

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.level2 import pseudo
from solver.level2.pseudo import pseudo_experiment, pseudo_targets, select_rows
from solver.level2.stages import ensemble_stage
from solver.runs.leaderboard import write_leaderboard
from solver.submit.submission import make_submission
from solver.train.run import train_experiment
from tests.synthetic import TINY_EXPERIMENT, make_competition


def _experiment(tmp_path, **train):
    return {**TINY_EXPERIMENT, "train": {**TINY_EXPERIMENT["train"], **train}}


def test_learnable_set_retrains_every_fold_and_writes_a_source(tmp_path):
    make_competition(tmp_path, n_train=48, n_test=24, experiment={**_experiment(tmp_path, epochs=4), "pseudo": {"top_fraction": 0.5}})
    train_experiment(tmp_path, "synth", "tiny")
    score = pseudo_experiment(tmp_path, "synth", "tiny")
    comp = Competition.load(tmp_path, "synth")
    run = tmp_path / "runs/synth/tiny/pseudo"
    assert score["source"] == "tiny/pseudo" and score["kind"] == "pseudo" and len(score["fold_scores"]) == 2
    assert score["cv"] > 0.5  # chance is 1/3: the retrain learned the task
    for k in (0, 1):
        labels = pd.read_csv(run / f"labels_fold{k}.csv")
        assert len(labels) == 12 and set(labels["target"]) <= set(comp.classes)  # half of the 24 test rows, fold k's own labels
        fold_test = pd.read_csv(tmp_path / f"runs/synth/tiny/fold{k}/test.csv", dtype={"id": str}).set_index("id")
        assert (fold_test.loc[labels["id"].astype(str), comp.classes].idxmax(axis=1).to_numpy() == labels["target"].to_numpy()).all()
        recorded = yaml.safe_load((run / f"fold{k}/config.yaml").read_text())
        assert recorded["pseudo_labels"]["top_fraction"] == 0.5
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    assert oof["id"].tolist() == comp.read_train()["id"].tolist()
    # read like any other source: leaderboard, ensembles, submit
    board, _ = write_leaderboard(comp)
    assert {"tiny", "tiny/pseudo"} <= set(board["source"]) and board.set_index("source").loc["tiny/pseudo", "kind"] == "pseudo"
    (tmp_path / "synth/ensembles").mkdir()
    (tmp_path / "synth/ensembles/both.yaml").write_text(yaml.safe_dump({"inputs": ["tiny", "tiny/pseudo"]}))
    assert ensemble_stage(tmp_path, "synth", "both")["kind"] == "ensemble"
    assert make_submission(comp, run).is_file()
    # nothing changed: nothing retrains; other settings need FRESH; the base folds retrained mark it stale
    before = (run / "fold0/best.pt").stat().st_mtime_ns
    assert pseudo_experiment(tmp_path, "synth", "tiny")["cv"] == pytest.approx(score["cv"])
    assert (run / "fold0/best.pt").stat().st_mtime_ns == before
    with pytest.raises(SolverError, match=r"finished with other settings \(pseudo_labels.*FRESH=1"):
        pseudo_experiment(tmp_path, "synth", "tiny", overrides=["pseudo.top_fraction=0.25"])
    train_experiment(tmp_path, "synth", "tiny", fresh=True)
    board, _ = write_leaderboard(comp)
    assert board.set_index("source").loc["tiny/pseudo", "stale"]
    with pytest.raises(SolverError, match=r"pseudo is stale: the folds of tiny were retrained since .*\(make pseudo COMP=synth EXP=tiny\)"):
        make_submission(comp, run)
    pseudo_experiment(tmp_path, "synth", "tiny")  # the same seed gave the same fold models and labels: joined again, not retrained
    assert (run / "fold0/best.pt").stat().st_mtime_ns == before and not write_leaderboard(comp)[0].set_index("source").loc["tiny/pseudo", "stale"]
    labels = tmp_path / "runs/synth/tiny/fold0/test.csv"  # fold 0's model labelling otherwise: its pseudo fold retrains
    labels.write_text(labels.read_text().replace("0.", "0.1", 1))
    pseudo_experiment(tmp_path, "synth", "tiny")
    assert (run / "fold0/best.pt").stat().st_mtime_ns > before


def _duplicated_test_with_noise_labels(tmp_path, n=24):
    """Test images are copies of the training images, and the training labels are noise: a model that saw a row
    memorises its random label and hands it to the row's test copy. Only such a leak can lift the CV above chance."""
    experiment = {**_experiment(tmp_path, epochs=12, lr=5e-3), "augment": {"train": []}, "pseudo": {"top_fraction": 1.0}}
    make_competition(tmp_path, labels=["a", "b"], n_train=n, n_test=n, experiment=experiment)
    data = tmp_path / "data/synth"
    train = pd.read_csv(data / "train.csv", dtype={"id": str})
    test = pd.read_csv(data / "test.csv", dtype={"id": str})
    for train_id, test_id in zip(train["id"], test["id"]):
        shutil.copy(data / f"train/{train_id}.png", data / f"test/{test_id}.png")
    train["label"] = np.random.default_rng(5).permutation(train["label"].to_numpy())
    train.to_csv(data / "train.csv", index=False)
    train_experiment(tmp_path, "synth", "tiny")


def test_shuffled_labels_stay_at_chance_and_a_leak_would_show(tmp_path, monkeypatch):
    _duplicated_test_with_noise_labels(tmp_path)
    safe = pseudo_experiment(tmp_path, "synth", "tiny")
    assert safe["cv"] <= 0.65, safe["cv"]  # chance is 1/2
    # The control: labels that carry fold k's own labels (what a model that saw fold k's rows memorises) lift the
    # same retrain's CV far above chance, so the test above can see a leak.
    n = len(Competition.load(tmp_path, "synth").read_test())

    def leaked(exp, k):
        return pseudo.FoldPseudoLabels(np.arange(n), exp.y.copy(), np.ones(n))  # test copy i gets train row i's label

    monkeypatch.setattr(pseudo, "fold_pseudo_labels", leaked)
    leaky = pseudo_experiment(tmp_path, "synth", "tiny", fresh=True)
    assert leaky["cv"] >= 0.75, leaky["cv"]


def test_selection_by_threshold_or_top_fraction():
    probs = np.array([[0.95, 0.05], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    assert select_rows(probs, "multiclass", 0.8, None).tolist() == [0, 2]
    assert select_rows(probs, "multiclass", None, 0.5).tolist() == [0, 2]
    assert select_rows(probs, "multiclass", None, None).tolist() == [0]  # default threshold 0.9
    labels = np.array([[0.99, 0.02], [0.99, 0.6]])
    assert select_rows(labels, "multilabel", 0.9, None).tolist() == [0]  # its least certain label decides


def test_targets_hard_soft_and_weighted():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert pseudo_targets(probs, "multiclass", "hard", 1.0, dense=False).tolist() == [0, 2]  # class indices, MixUp-able
    np.testing.assert_allclose(pseudo_targets(probs, "multiclass", "hard", 0.5, dense=True), [[0.5, 0, 0], [0, 0, 0.5]])
    np.testing.assert_allclose(pseudo_targets(probs, "multiclass", "soft", 2.0, dense=True), 2 * probs)
    labels = np.array([[0.9, 0.2]])
    assert pseudo_targets(labels, "multilabel", "hard", 1.0, dense=True).tolist() == [[1.0, 0.0]]
    np.testing.assert_allclose(pseudo_targets(labels, "multilabel", "soft", 1.0, dense=True), labels)


def test_soft_labels_with_a_weight_train_on_weighted_class_probabilities(tmp_path):
    make_competition(tmp_path, n_train=24, n_test=8, experiment={**TINY_EXPERIMENT, "pseudo": {"labels": "soft", "weight": 0.5, "top_fraction": 1.0}})
    train_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1"])
    seen = {}
    original = pseudo.with_pseudo_rows

    def spy(exp, labels):
        extend = original(exp, labels)

        def wrapped(train_ds, k):
            seen[k] = extend(train_ds, k)
            return seen[k]

        return wrapped

    pseudo.with_pseudo_rows = spy
    try:
        pseudo_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1", "pseudo.epochs=1"])
    finally:
        pseudo.with_pseudo_rows = original
    targets = seen[0].targets
    assert targets.shape == (12 + 8, 3) and targets.dtype == np.float32
    np.testing.assert_allclose(targets[:12].sum(axis=1), 1.0)  # training rows: one-hot
    np.testing.assert_allclose(targets[12:].sum(axis=1), 0.5, rtol=1e-5)  # pseudo rows: probabilities x weight


def test_bad_settings_are_one_clear_line(tmp_path):
    make_competition(tmp_path, n_train=24, n_test=8)
    with pytest.raises(SolverError, match="fold 0 is not trained; .*make train COMP=synth EXP=tiny first"):
        pseudo_experiment(tmp_path, "synth", "tiny")
    with pytest.raises(SolverError, match="pseudo.threshold .* or pseudo.top_fraction .*, not both"):
        pseudo_experiment(tmp_path, "synth", "tiny", overrides=["pseudo.threshold=0.9", "pseudo.top_fraction=0.5"])
    with pytest.raises(SolverError, match="MixUp/CutMix mix class indices only"):
        pseudo_experiment(tmp_path, "synth", "tiny", overrides=["pseudo.labels=soft", "train.mixup_alpha=0.2"])
    train_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1"])
    with pytest.raises(SolverError, match=r"fold 0's model is 1.0 confident on no test row \(at most 0\.\d+\); lower pseudo.threshold"):
        pseudo_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=1", "pseudo.threshold=1.0"])
    assert not (tmp_path / "runs/synth/tiny/pseudo").exists()  # nothing written by a refused run
