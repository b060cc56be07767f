"""Nothing already computed is lost: training a finished experiment again, another config for its run folder,
a resume after a config change, a retrain (FRESH) stopped halfway, a fold whose checkpoint is gone."""

import os
import shutil
import subprocess

import pandas as pd
import pytest
import yaml

import solver.train.run as experiment_run
from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.config.loader import parse_overrides
from solver.level2.knn_stage import knn_stage
from solver.nn import distributed
from solver.predict.run import predict_experiment
from solver.runs.leaderboard import collect_scores
from solver.runs.source import stale_inputs
from solver.train.run import train_experiment
from tests.conftest import run_solver, solver_command
from tests.synthetic import TINY_EXPERIMENT, make_competition
from tests.unit.train.test_parallel_folds import ENV

EXPERIMENT = {**TINY_EXPERIMENT, "train": {**TINY_EXPERIMENT["train"], "epochs": 1}}
RESULTS = ("oof.csv", "test.csv", "score.json", "config.yaml", "submission.csv")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-fold experiment with its derived sources: TTA-2 (tiny/tta2) and kNN (tiny/knn), and a submission."""
    root = tmp_path_factory.mktemp("trained")
    make_competition(root, n_train=32, n_test=8, experiment=EXPERIMENT)
    train_experiment(root, "synth", "tiny")
    predict_experiment(root, "synth", "tiny", tta=2)
    knn_stage(root, "synth", "tiny", ["knn.k=3"])
    (root / "runs/synth/tiny/submission.csv").write_text("id,label\n")
    return root


@pytest.fixture
def root(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "copy")
    return tmp_path / "copy"


def snapshot(folder):
    """Every file under folder (locks aside) with its bytes and modification time."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and ".lock" not in p.name]
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_training_a_finished_experiment_again_leaves_it_as_it_is(root, capsys):
    run = root / "runs/synth/tiny"
    before = snapshot(run)
    capsys.readouterr()
    train_experiment(root, "synth", "tiny")  # returns: `make train` exits 0
    out = capsys.readouterr().out
    assert "is complete" in out and "FRESH=1" in out and "RUN=" in out
    assert "epoch" not in out  # nothing was trained
    assert snapshot(run) == before


def test_another_config_for_a_finished_run_is_refused_naming_the_keys(root):
    run = root / "runs/synth/tiny"
    before = snapshot(run)
    every_key = r"data\.batch_size 4 \(now\) vs 8 \(there\), train\.lr 0\.01 \(now\) vs 0\.003 \(there\)\)"
    with pytest.raises(SolverError, match=every_key + ".*FRESH=1.*RUN="):
        train_experiment(root, "synth", "tiny", overrides=["train.lr=0.01", "data.batch_size=4"])
    assert snapshot(run) == before


def test_a_retrain_stopped_halfway_keeps_every_result_and_a_finished_one_marks_derived_sources_stale(root, monkeypatch):
    run = root / "runs/synth/tiny"
    before = snapshot(run)
    train_fold = experiment_run.train_fold

    def ctrl_c_after_fold_0(exp, k, *args):
        if k == 1:
            raise KeyboardInterrupt
        return train_fold(exp, k, *args)

    monkeypatch.setattr(experiment_run, "train_fold", ctrl_c_after_fold_0)
    with pytest.raises(KeyboardInterrupt):
        train_experiment(root, "synth", "tiny", overrides=["train.lr=0.01"], fresh=True)
    after = snapshot(run)
    kept = [name for name in before if not name.startswith("fold0/")]  # fold 0 was replaced, nothing else changed
    assert {name: after.get(name) for name in kept} == {name: before[name] for name in kept}
    assert all(name in after for name in RESULTS) and stale_inputs(run / "tta2") is None

    monkeypatch.setattr(experiment_run, "train_fold", train_fold)
    train_experiment(root, "synth", "tiny", overrides=["train.lr=0.01"], fresh=True)
    assert yaml.safe_load((run / "config.yaml").read_text())["config"]["train"]["lr"] == 0.01  # joined anew
    for derived in ("tta2", "knn"):  # kept, each marked stale: the leaderboard greys it, submit refuses it
        assert (run / derived / "oof.csv").read_bytes() == before[f"{derived}/oof.csv"][0]
        assert "retrained" in stale_inputs(run / derived)
    assert (run / "submission.stale.csv").read_text() == "id,label\n" and not (run / "submission.csv").exists()
    board = collect_scores(Competition.load(root, "synth")).set_index("source")["stale"]
    assert board.to_dict() == {"tiny": False, "tiny/tta2": True, "tiny/knn": True}


def test_a_fresh_retrain_killed_inside_a_fold_resumes_without_fresh(root, monkeypatch):
    """FRESH=1 killed in fold 1: fold0 has the new config, fold1 the old one beside fold1.partial of the new one.
    Running the new config again (no FRESH) keeps the new fold 0, resumes fold 1 and joins."""
    run = root / "runs/synth/tiny"
    train_fold = experiment_run.train_fold

    def ctrl_c_in_fold_1(exp, k, *args):
        if k == 1:
            shutil.copytree(run / "fold0", run / "fold1.partial")  # as a kill after fold 1's first checkpoint leaves it
            raise KeyboardInterrupt
        return train_fold(exp, k, *args)

    monkeypatch.setattr(experiment_run, "train_fold", ctrl_c_in_fold_1)
    with pytest.raises(KeyboardInterrupt):
        train_experiment(root, "synth", "tiny", overrides=["train.lr=0.01"], fresh=True)
    monkeypatch.setattr(experiment_run, "train_fold", train_fold)
    new_fold_0 = snapshot(run / "fold0")
    train_experiment(root, "synth", "tiny", overrides=["train.lr=0.01"])
    assert snapshot(run / "fold0") == new_fold_0  # not trained again
    assert not (run / "fold1.partial").exists()
    for folder in ("fold1", "."):
        assert yaml.safe_load((run / folder / "config.yaml").read_text())["config"]["train"]["lr"] == 0.01


def test_a_resume_under_another_config_is_refused_and_fresh_starts_over(root):
    run = root / "runs/synth/tiny"
    shutil.rmtree(run)
    train_experiment(root, "synth", "tiny", folds=[0])
    (run / "fold0").rename(run / "fold0.partial")  # as a killed run of fold 0 (lr 0.003) leaves it: a checkpoint and its config
    before = snapshot(run)
    with pytest.raises(SolverError, match=r"fold0\.partial.*train\.lr 0\.01 \(now\) vs 0\.003.*FRESH=1"):
        train_experiment(root, "synth", "tiny", folds=[0], overrides=["train.lr=0.01"])
    assert snapshot(run) == before
    train_experiment(root, "synth", "tiny", folds=[0], overrides=["train.lr=0.01"], fresh=True)
    assert yaml.safe_load((run / "fold0/config.yaml").read_text())["config"]["train"]["lr"] == 0.01
    assert not (run / "fold0.partial").exists()


def test_predict_refuses_a_fold_whose_checkpoint_is_gone(root):
    run = root / "runs/synth/tiny"
    (run / "fold1/best.pt").unlink()
    before = snapshot(run)
    with pytest.raises(SolverError, match=r"fold1/best\.pt.*make train COMP=synth EXP=tiny FOLD=1"):
        predict_experiment(root, "synth", "tiny")
    assert snapshot(run) == before
    # a run folder of its own (RUN=) is named in the hint with the experiment file it was trained from
    shutil.copytree(run, root / "runs/synth/copy")
    with pytest.raises(SolverError, match=r"retrain that fold: make train COMP=synth EXP=tiny RUN=copy FOLD=1"):
        predict_experiment(root, "synth", "tiny", run_name="copy")


def test_the_leaderboard_marks_sources_made_on_an_old_folds_file_stale(root):
    comp = Competition.load(root, "synth")
    assert not collect_scores(comp)["stale"].any()
    folds = pd.read_csv(comp.folds_path)
    folds["fold"] = 1 - folds["fold"]  # make folds wrote a new folds file since
    folds.to_csv(comp.folds_path, index=False)
    assert collect_scores(comp)["stale"].all()


def test_model_kwargs_without_a_space_after_the_colon_is_an_error():
    assert parse_overrides(["model.kwargs={foo: 1}"]) == {"model": {"kwargs": {"foo": 1}}}
    with pytest.raises(SolverError, match=r"model\.kwargs.*'foo:1'.*\{foo: 1\}"):
        parse_overrides(["model.kwargs={foo:1}"])


def test_knn_and_predict_take_the_run_folder_name(repo, root):
    runs = root / "runs/synth"
    (runs / "tiny").rename(runs / "sweep1")
    done = run_solver("knn", "--root", str(root), "--comp", "synth", "--exp", "tiny", "--name", "sweep1", "knn.k=3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (runs / "sweep1/knn/score.json").is_file() and not (runs / "tiny").exists()
    recipes = (repo / "Makefile").read_text().split("\n\n")
    for target in ("predict", "knn"):
        recipe = next(block for block in recipes if block.lstrip().startswith(f"{target}:"))
        assert "$(if $(RUN),--name $(RUN))" in recipe, recipe


def test_an_all_folds_job_whose_fold_a_parallel_job_finished_exits_0(repo, root):
    run = root / "runs/synth/tiny"
    (run / "fold1").rename(root / "fold1")  # what the parallel `FOLD=1` job (this test) will promote
    command = solver_command("train", "--root", str(root), "--comp", "synth", "--exp", "tiny")
    with distributed.locked(run / ".fold1.lock", "fold 1"):  # the parallel job is training fold 1
        job = subprocess.Popen(command, env={**ENV, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        while not lines or "being trained by another job" not in lines[-1]:
            lines.append(job.stdout.readline())
            assert lines[-1], "".join(lines)[-3000:]  # the job ended without waiting for fold 1
        for name in ("best.pt", "oof.csv"):
            os.utime(root / "fold1" / name)  # finished now, after the join of fold 0
        (root / "fold1").rename(run / "fold1")
    out = "".join(lines) + job.communicate(timeout=300)[0]
    assert job.returncode == 0, out[-3000:]
    assert "fold 1: trained by the other job" in out and "CV accuracy" in out
