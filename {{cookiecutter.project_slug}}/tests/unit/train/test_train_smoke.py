"""Seconds-long training runs on synthetic images: the whole pipeline for both tasks."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.predict.run import predict_experiment
from solver.runs.leaderboard import write_leaderboard
from solver.submit.submission import make_submission
from solver.train import loop as trainer
from solver.train.run import train_experiment
from tests.synthetic import make_competition

CASES = {
    "multiclass-text-labels": dict(task="multiclass"),
    "multiclass-grayscale-int-labels": dict(task="multiclass", labels=["0", "1", "2"], channels=1),
    "multilabel-space-separated": dict(task="multilabel"),
    "multilabel-01-columns": dict(task="multilabel", multilabel_format="columns"),
}


@pytest.mark.parametrize("case", CASES)
def test_train_predict_submit_leaderboard(tmp_path, case):
    make_competition(tmp_path, **CASES[case])
    score = train_experiment(tmp_path, "synth", "tiny")
    comp = Competition.load(tmp_path, "synth")
    run = tmp_path / "runs/synth/tiny"
    train = comp.read_train()
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    assert oof["id"].tolist() == train["id"].tolist()  # every training row once, in train.csv order
    assert sorted(oof["fold"].unique()) == [0, 1]
    test = pd.read_csv(run / "test.csv", dtype={"id": str})
    assert len(test) == len(comp.read_test()) and list(test.columns) == ["id", *comp.classes]
    for k in (0, 1):
        fold = run / f"fold{k}"
        assert {"best.pt", "last.pt", "metrics.csv", "config.yaml", "oof.csv", "test.csv", "tb"} <= {p.name for p in fold.iterdir()}
        resolved = (fold / "config.yaml").read_text()
        assert "git_sha:" in resolved and "seed: 42" in resolved and f"fold: {k}" in resolved
        assert len(pd.read_csv(fold / "metrics.csv")) == 2
    saved = json.loads((run / "score.json").read_text())
    assert saved["cv"] == pytest.approx(score["cv"]) and len(saved["fold_scores"]) == 2
    sub_path = make_submission(comp, run)
    assert len(pd.read_csv(sub_path)) == len(comp.read_sample_submission())
    board, text = write_leaderboard(comp)
    assert board["source"].tolist() == ["tiny"] and comp.metric.name in text
    assert (tmp_path / "runs/synth/leaderboard.csv").is_file()
    before = test.copy()
    predict_experiment(tmp_path, "synth", "tiny")  # from the checkpoints: the same predictions
    after = pd.read_csv(run / "test.csv", dtype={"id": str})
    np.testing.assert_allclose(after[comp.classes].to_numpy(), before[comp.classes].to_numpy(), atol=1e-6)


def test_learns_the_synthetic_task(tmp_path):
    make_competition(tmp_path, n_train=96)
    score = train_experiment(tmp_path, "synth", "tiny", overrides=["train.epochs=6"])
    assert score["cv"] > 0.8  # chance is 1/3


def test_same_seed_same_predictions(tmp_path):
    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny", folds=[0])
    first = pd.read_csv(tmp_path / "runs/synth/tiny/fold0/oof.csv")
    train_experiment(tmp_path, "synth", "tiny", folds=[0], fresh=True)
    second = pd.read_csv(tmp_path / "runs/synth/tiny/fold0/oof.csv")
    pd.testing.assert_frame_equal(first, second)


def test_single_fold_waits_for_the_others_before_scoring(tmp_path):
    make_competition(tmp_path)
    assert train_experiment(tmp_path, "synth", "tiny", folds=[1]) is None
    assert not (tmp_path / "runs/synth/tiny/score.json").exists()
    assert train_experiment(tmp_path, "synth", "tiny", folds=[0]) is not None
    with pytest.raises(SolverError, match="fold 5 does not exist"):
        train_experiment(tmp_path, "synth", "tiny", folds=[5])


def test_a_failed_run_leaves_finished_results_untouched(tmp_path, monkeypatch):
    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    run = tmp_path / "runs/synth/tiny"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def crash_on_second_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash mid-epoch")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", crash_on_second_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_experiment(tmp_path, "synth", "tiny", overrides=["train.lr=0.1"], fresh=True)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and ".partial" not in str(p)}
    assert after == before


def test_nan_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    make_competition(tmp_path)
    monkeypatch.setattr(trainer, "loss_function", lambda task: lambda logits, y: (logits * float("nan")).sum())
    with pytest.raises(SolverError, match="training loss became nan"):
        train_experiment(tmp_path, "synth", "tiny", folds=[0])


def test_folds_trained_with_different_configs_are_not_mixed(tmp_path):
    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    run = tmp_path / "runs/synth/tiny"
    fold1 = (run / "fold1/best.pt").read_bytes()
    with pytest.raises(SolverError, match=r"fold0 finished with another config \(train.lr 0.01 \(now\) vs 0.003 \(there\)\)"):
        train_experiment(tmp_path, "synth", "tiny", folds=[1], overrides=["train.lr=0.01"])
    assert (run / "fold1/best.pt").read_bytes() == fold1 and (run / "score.json").is_file()
    # Where and how fast a fold trains may differ between folds (one fold per GPU).
    assert train_experiment(tmp_path, "synth", "tiny", folds=[1], overrides=["train.folds=[1]", "data.num_workers=1"]) is not None
    # A new config for every fold replaces them all, with FRESH.
    assert train_experiment(tmp_path, "synth", "tiny", overrides=["train.lr=0.01"], fresh=True) is not None


def test_retraining_a_fold_keeps_the_experiment_outputs_until_the_join(tmp_path):
    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    run = tmp_path / "runs/synth/tiny"
    make_submission(Competition.load(tmp_path, "synth"), run)
    from solver.train.experiment import load_experiment
    from solver.train.run import train_fold

    exp = load_experiment(tmp_path, "synth", "tiny")
    train_fold(exp, 0, fresh=True)
    assert all((run / name).exists() for name in ("oof.csv", "test.csv", "score.json", "submission.csv"))


def test_test_predictions_are_averaged_by_id_not_by_row(tmp_path):
    from solver.train.experiment import load_experiment
    from solver.train.predictions import aggregate

    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    run = tmp_path / "runs/synth/tiny"
    before = pd.read_csv(run / "test.csv")
    shuffled = pd.read_csv(run / "fold1/test.csv").iloc[::-1]
    shuffled.to_csv(run / "fold1/test.csv", index=False)
    aggregate(load_experiment(tmp_path, "synth", "tiny"))
    pd.testing.assert_frame_equal(pd.read_csv(run / "test.csv"), before)


def test_a_new_folds_file_is_not_mixed_with_folds_of_the_old_one(tmp_path):
    from solver.train.experiment import load_experiment
    from solver.train.predictions import aggregate

    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    (tmp_path / "runs/synth/folds.csv").unlink()
    cfg = tmp_path / "synth/competition.yaml"
    cfg.write_text(cfg.read_text() + "fold_seed: 7\n")
    with pytest.raises(SolverError, match="folds_hash"):
        train_experiment(tmp_path, "synth", "tiny", folds=[0])
    with pytest.raises(SolverError, match="OOF rows were predicted by other folds|do not cover"):
        aggregate(load_experiment(tmp_path, "synth", "tiny"))


def test_a_promotion_killed_between_renames_is_restored(tmp_path):
    import os

    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    run = tmp_path / "runs/synth/tiny"
    os.replace(run / "fold0", run / "fold0.old")  # what a kill between promote_dir's renames leaves
    assert train_experiment(tmp_path, "synth", "tiny", folds=[1]) is not None  # fold0 is back, consistent
    assert (run / "fold0/best.pt").is_file() and not (run / "fold0.old").exists()
