"""Folds as independent jobs: `--fold 0` and `--fold 1` started at once on one experiment do not clobber each other."""

import os
import subprocess

import pandas as pd
import pytest

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.nn import distributed
from solver.train.experiment import load_experiment
from solver.train.run import train_fold
from tests.conftest import solver_command
from tests.synthetic import make_competition

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
FOLD_FILES = {"best.pt", "last.pt", "metrics.csv", "config.yaml", "oof.csv", "test.csv", "tb", "learning_curves.png"}


def test_two_fold_jobs_at_once(repo, tmp_path):
    make_competition(tmp_path, n_train=48)  # no folds.csv yet: both jobs race to make it
    command = solver_command("train", "--root", str(tmp_path), "--comp", "synth", "--exp", "tiny", "--fold")
    jobs = [subprocess.Popen([*command, str(k)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (0, 1)]
    outputs = [job.communicate(timeout=900) for job in jobs]
    for job, (_, err) in zip(jobs, outputs):
        assert job.returncode == 0, err[-3000:]

    run = tmp_path / "runs/synth/tiny"
    for k in (0, 1):
        assert FOLD_FILES <= {p.name for p in (run / f"fold{k}").iterdir()}
        assert len(pd.read_csv(run / f"fold{k}/metrics.csv")) == 2
    assert not list(run.glob("*.partial")) and not list(run.glob("*.old")) and not list(run.rglob(".*.tmp"))
    # The job that finished last joined both folds: the OOF covers train.csv once, in order.
    assert sum("CV accuracy" in out for out, _ in outputs) == 1
    comp = Competition.load(tmp_path, "synth")
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    assert oof["id"].tolist() == comp.read_train()["id"].tolist()
    assert sorted(oof["fold"].unique()) == [0, 1]
    assert (run / "score.json").is_file() and (run / "test.csv").is_file()


def test_second_job_on_the_same_fold_fails_clearly(tmp_path):
    make_competition(tmp_path, n_train=32)
    exp = load_experiment(tmp_path, "synth", "tiny")
    # Another job holds fold 1 (the lock a running `--fold 1` takes): this one must not train into fold1.partial.
    with distributed.locked(exp.dir / ".fold1.lock", "fold 1"):
        with pytest.raises(SolverError, match=r"fold 1 of .* is in use by pid \d+"):
            train_fold(exp, 1)
    assert not (exp.dir / "fold1.partial").exists()
