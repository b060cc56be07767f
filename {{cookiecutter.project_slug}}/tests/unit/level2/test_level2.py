"""kNN features, ensembles and stacks as stages: leaderboard rows, fold safety, clear errors."""

import numpy as np
import pandas as pd
import pytest
import yaml

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.level2.knn_stage import knn_stage
from solver.level2.stages import ensemble_stage, stack_stage, to_logits
from solver.predict.run import predict_experiment
from solver.runs.leaderboard import write_leaderboard
from solver.submit.submission import make_submission
from solver.train.run import train_experiment
from tests.synthetic import TINY_EXPERIMENT, make_competition


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))


def _two_experiments(tmp_path, shuffle_labels=False, n_train=96):
    make_competition(tmp_path, n_train=n_train, experiment={**TINY_EXPERIMENT, "train": {**TINY_EXPERIMENT["train"], "epochs": 3}})
    if shuffle_labels:
        path = tmp_path / "data/synth/train.csv"
        train = pd.read_csv(path)
        train["label"] = np.random.default_rng(1).permutation(train["label"].to_numpy())
        train.to_csv(path, index=False)
    other = {**TINY_EXPERIMENT, "model": {"name": "test_efficientnet"}, "train": {**TINY_EXPERIMENT["train"], "epochs": 3, "seed": 7}}
    _write(tmp_path / "synth/configs/tiny2.yaml", other)
    train_experiment(tmp_path, "synth", "tiny")
    train_experiment(tmp_path, "synth", "tiny2")
    _write(tmp_path / "synth/stacks/stack1.yaml", {"inputs": ["tiny", "tiny2"], "knn": ["tiny"], "lgbm": {"min_data_in_leaf": 5, "inner_folds": 2}})
    _write(tmp_path / "synth/ensembles/ens_mean.yaml", {"inputs": ["tiny", "tiny2"]})
    _write(tmp_path / "synth/ensembles/ens_caruana.yaml", {"inputs": ["tiny", "tiny2", "tiny/tta2"], "method": "caruana", "iterations": 5})


def test_every_stage_adds_a_leaderboard_row_and_can_be_submitted(tmp_path, capsys):
    _two_experiments(tmp_path)
    predict_experiment(tmp_path, "synth", "tiny", tta=2)
    knn = knn_stage(tmp_path, "synth", "tiny")
    assert knn["kind"] == "knn" and knn["exact"] and knn["recall_at_k"] is None  # exact search: no HNSW index to measure
    features = pd.read_csv(tmp_path / "runs/synth/tiny/knn/features_oof.csv")
    assert {"knn_p_0", "knn_d_0", "knn_top_0"} <= set(features.columns)
    ensemble_stage(tmp_path, "synth", "ens_mean")
    caruana = ensemble_stage(tmp_path, "synth", "ens_caruana")
    assert set(caruana["weights"]) == {"tiny", "tiny2", "tiny/tta2"} and sum(caruana["weights"].values()) == pytest.approx(1)
    stack = stack_stage(tmp_path, "synth", "stack1")
    assert stack["kind"] == "stack"
    # The stack says how alike its inputs are, which model each fold chose by inner CV, and what the kNN block earned.
    assert set(stack["oof_correlation"]) == {"tiny ~ tiny2"} and -1 <= stack["oof_correlation"]["tiny ~ tiny2"] <= 1
    assert len(stack["models"]) == comp_folds(tmp_path) and all(m.startswith(("blend(", "logistic", "lgbm")) for m in stack["models"])
    out = capsys.readouterr().out
    assert "OOF correlation of the inputs" in out and "stack model per fold (inner CV)" in out and "kNN block: saves" in out
    comp = Competition.load(tmp_path, "synth")
    board, text = write_leaderboard(comp)
    assert set(board["source"]) == {"tiny", "tiny2", "tiny/tta2", "tiny/knn", "ens_mean", "ens_caruana", "stack1"}
    assert set(board["kind"]) == {"experiment", "tta", "knn", "ensemble", "stack"}
    for source in ("tiny/knn", "ens_caruana", "stack1"):
        assert make_submission(comp, tmp_path / "runs/synth" / source).is_file()
    assert not board["stale"].any()
    # An input recomputed after the stack was made: the stack is marked stale and cannot be submitted.
    oof = tmp_path / "runs/synth/tiny2/oof.csv"
    oof.write_text(oof.read_text().replace("0.", "0.0", 1))
    board, _ = write_leaderboard(comp)
    assert set(board[board["stale"]]["source"]) == {"ens_mean", "ens_caruana", "stack1"}
    with pytest.raises(SolverError, match="stack1 is stale: its input 'tiny2' changed"):
        make_submission(comp, tmp_path / "runs/synth/stack1")


def comp_folds(root) -> int:
    return Competition.load(root, "synth").cfg.n_folds


def test_stack_features_are_logits():
    probs = np.array([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(to_logits(probs, "multiclass")[0], np.log([0.7, 0.2, 0.1]))
    assert np.isfinite(to_logits(probs, "multiclass")).all()  # a probability of 0 is clipped, not -inf
    np.testing.assert_allclose(to_logits(np.array([[0.5, 0.9]]), "multilabel"), [[0.0, np.log(9)]])


def test_shuffled_labels_keep_knn_and_stack_at_chance(tmp_path):
    """Leakage test: labels independent of the images; a fold-safe stage cannot beat chance (1/3)."""
    _two_experiments(tmp_path, shuffle_labels=True, n_train=150)
    knn = knn_stage(tmp_path, "synth", "tiny")
    stack = stack_stage(tmp_path, "synth", "stack1")
    assert knn["cv"] < 0.48 and stack["cv"] < 0.48, (knn["cv"], stack["cv"])


def test_bad_level2_inputs_are_clear_errors(tmp_path):
    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny", folds=[0])  # one fold only: no OOF file yet
    _write(tmp_path / "synth/stacks/s.yaml", {"inputs": ["tiny"]})
    with pytest.raises(SolverError, match=r"source 'tiny' has no oof.csv .*train all its folds"):
        stack_stage(tmp_path, "synth", "s")
    with pytest.raises(SolverError, match=r"stacks/nope.yaml not found; stacks of synth: s"):
        stack_stage(tmp_path, "synth", "nope")
    train_experiment(tmp_path, "synth", "tiny", folds=[1])
    _write(tmp_path / "synth/stacks/k.yaml", {"inputs": ["tiny"], "knn": ["tiny"]})
    with pytest.raises(SolverError, match=r"no kNN features for 'tiny'.*make knn COMP=synth EXP=tiny"):
        stack_stage(tmp_path, "synth", "k")
    # Another experiment trained on other folds (the folds file was remade) cannot join.
    run = tmp_path / "runs/synth/tiny"
    other = tmp_path / "runs/synth/other"
    other.mkdir()
    for name in ("oof.csv", "test.csv"):
        (other / name).write_bytes((run / name).read_bytes())
    config = yaml.safe_load((run / "config.yaml").read_text())
    _write(other / "config.yaml", {**config, "folds_hash": "0123456789abcdef"})
    _write(tmp_path / "synth/ensembles/e.yaml", {"inputs": ["tiny", "other"]})
    with pytest.raises(SolverError, match="folds"):
        ensemble_stage(tmp_path, "synth", "e")
    _write(other / "config.yaml", {**config, "classes": ["cat", "dog", "wolf"]})
    with pytest.raises(SolverError, match="class"):
        ensemble_stage(tmp_path, "synth", "e")
