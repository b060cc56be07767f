"""`make train FULL=1` (solver/train/full_fit.py): one model on every row, for the epochs the folds chose, as a source
without a CV of its own."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.level2.stages import ensemble_stage
from solver.runs.leaderboard import write_leaderboard
from solver.submit.submission import make_submission
from solver.train.full_fit import full_fit
from solver.train.run import train_experiment
from tests.conftest import run_solver
from tests.synthetic import TINY_EXPERIMENT, make_competition


def test_refit_on_every_row_is_a_submittable_source_without_a_cv(tmp_path, repo):
    n_train, n_test = 48, 24
    make_competition(tmp_path, n_train=n_train, n_test=n_test, experiment={**TINY_EXPERIMENT, "train": {**TINY_EXPERIMENT["train"], "epochs": 4}})
    with pytest.raises(SolverError, match=r"fold 0 is not trained; FULL=1 .*make train COMP=synth EXP=tiny first \(without FULL=1\)"):
        full_fit(tmp_path, "synth", "tiny")
    cv = train_experiment(tmp_path, "synth", "tiny")["cv"]
    score = full_fit(tmp_path, "synth", "tiny")
    run, comp = tmp_path / "runs/synth/tiny", Competition.load(tmp_path, "synth")
    best = [torch.load(run / f"fold{k}/best.pt", weights_only=True)["epoch"] for k in (0, 1)]
    assert score["epochs"] == int(np.floor(np.median(best) + 0.5)) and len(pd.read_csv(run / "full/metrics.csv")) == score["epochs"]
    saved = json.loads((run / "full/score.json").read_text())
    assert saved["cv"] is None and saved["cv_from"] == "tiny" and saved["cv_borrowed"] == pytest.approx(cv) and saved["kind"] == "full"
    assert not (run / "full/oof.csv").exists()
    assert yaml.safe_load((run / "full/config.yaml").read_text())["fold_best_epochs"] == best
    test = pd.read_csv(run / "full/test.csv", dtype={"id": str})
    assert test["id"].tolist() == comp.read_test()["id"].tolist()
    truth = np.arange(n_train, n_train + n_test) % 3  # tests/synthetic.py: sample i is of class i % 3
    assert (test[comp.classes].to_numpy().argmax(axis=1) == truth).mean() > 0.6  # chance is 1/3
    assert make_submission(comp, run / "full").is_file()
    board, text = write_leaderboard(comp)
    row = board.set_index("source").loc["tiny/full"]
    assert pd.isna(row["cv"]) and row["cv_from"] == "tiny" and board["source"].iloc[-1] == "tiny/full"  # no CV, sorted last
    (tmp_path / "synth/ensembles").mkdir()
    (tmp_path / "synth/ensembles/with_full.yaml").write_text(yaml.safe_dump({"inputs": ["tiny", "tiny/full"]}))
    with pytest.raises(
        SolverError, match="source 'tiny/full' is a full refit without OOF predictions: ensembles and stacks cannot use it; use 'tiny'"
    ):
        ensemble_stage(tmp_path, "synth", "with_full")
    before = (run / "full/model.pt").stat().st_mtime_ns
    full_fit(tmp_path, "synth", "tiny")  # done already: nothing retrains
    assert (run / "full/model.pt").stat().st_mtime_ns == before
    train_experiment(tmp_path, "synth", "tiny", fresh=True)  # new folds: the refit is stale until FULL=1 runs again
    with pytest.raises(SolverError, match=r"full is stale: .*make train FULL=1 COMP=synth EXP=tiny"):
        make_submission(comp, run / "full")
    full_fit(tmp_path, "synth", "tiny")
    assert (run / "full/model.pt").stat().st_mtime_ns > before and make_submission(comp, run / "full").is_file()
    result = run_solver("train", "--root", str(tmp_path), "--comp", "synth", "--exp", "tiny", "--full", "--fold", "0")
    assert result.returncode == 2 and "error: FULL=1 trains on every row, not on folds: drop FOLD=0" in result.stderr


def test_another_config_is_refused_and_a_plateau_schedule_replays_the_folds_lr(tmp_path):
    make_competition(tmp_path, n_train=24, n_test=8)
    plateau = ["train.epochs=4", "train.schedule.name=plateau", "train.schedule.patience=0", "train.schedule.factor=0.1"]
    train_experiment(tmp_path, "synth", "tiny", overrides=plateau)
    with pytest.raises(SolverError, match=r"fold0 was trained with another config \(train.lr 0.01 \(now\) vs 0.003 \(there\)\); FULL=1 takes"):
        full_fit(tmp_path, "synth", "tiny", overrides=[*plateau, "train.lr=0.01"])
    assert not (tmp_path / "runs/synth/tiny/full").exists()
    full_fit(tmp_path, "synth", "tiny", overrides=plateau)
    run = tmp_path / "runs/synth/tiny"
    folds = pd.concat([pd.read_csv(run / f"fold{k}/metrics.csv") for k in (0, 1)]).groupby("epoch")["lr"].median()
    full = pd.read_csv(run / "full/metrics.csv").set_index("epoch")["lr"]
    assert folds.nunique() > 1  # the folds' plateau lowered the lr
    np.testing.assert_allclose(full.to_numpy(), folds.loc[full.index].to_numpy())
