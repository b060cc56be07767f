"""make baseline: the whole pipeline within a time budget, from the command line, on a synthetic competition."""

import json
import subprocess

import pandas as pd
import pytest
import yaml

from solver.base.errors import SolverError
from solver.commands import baseline as baseline_command
from tests.conftest import run_solver, solver_command
from tests.synthetic import make_competition
from tests.unit.train.test_budget import CURRICULUM


def baseline(root, *args):
    return subprocess.run(solver_command("baseline", "--root", str(root), "--comp", "synth", *args), capture_output=True, text=True, timeout=600)


def test_a_budget_gives_a_validated_submission_of_the_best_cv_source(tmp_path):
    make_competition(tmp_path, experiment=CURRICULUM, n_train=64)
    result = baseline(tmp_path, "--minutes", "1.5", "--exp", "tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs/synth/tiny_1.5min"
    report = json.loads((run / "budget.json").read_text())
    assert report["recipe_epochs"] == [4, 10, 2] and len(report["epochs"]) == 3 and all(1 <= n for n in report["epochs"])
    assert report["spent_seconds"] > 0 and report["budget_seconds"] == 90 and report["submitted"] in result.stdout
    assert "minutes spent" in result.stdout and "estimated finish" in result.stdout  # progress: time spent and the finish
    submitted = report["submitted"]
    board = pd.read_csv(tmp_path / "runs/synth/leaderboard.csv")
    ours = board[board["source"].str.startswith("tiny_1.5min")]
    assert ours.set_index("source")["cv"][submitted] == ours["cv"].max()  # the best CV of this run (a tie: the plain folds)
    sub = pd.read_csv(tmp_path / f"runs/synth/{submitted}/submission.csv")
    sample = pd.read_csv(tmp_path / "data/synth/sample_submission.csv")
    assert sub["id"].tolist() == sample["id"].tolist()
    assert pd.read_csv(tmp_path / "runs/synth/submissions.csv")["source"].tolist() == [submitted]
    folds = [yaml.safe_load((run / f"fold{k}/config.yaml").read_text())["config"]["train"]["stages"] for k in (0, 1)]
    assert [s["epochs"] for s in folds[0]] == report["epochs"] == [s["epochs"] for s in folds[1]]  # every fold the same recipe


def test_too_small_a_budget_is_one_line_with_the_minutes_needed(tmp_path):
    make_competition(tmp_path, experiment=CURRICULUM)
    result = run_solver("baseline", "--root", str(tmp_path), "--comp", "synth", "--minutes", "0.05", "--exp", "tiny")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "a budget of 0.05 minutes is too small for tiny" in result.stderr and "give MINUTES=" in result.stderr
    assert not list((tmp_path / "runs/synth").glob("tiny*/fold*"))  # nothing trained


@pytest.mark.parametrize("minutes", ["0", "soon", ""])
def test_a_budget_that_is_no_number_of_minutes_is_refused(tmp_path, minutes):
    with pytest.raises(SolverError, match="give the time budget in minutes, e.g. make baseline COMP=synth MINUTES=30"):
        baseline_command.main(["--root", str(tmp_path), "--comp", "synth", "--minutes", minutes])
