"""make tune: Optuna over an experiment's tune block, SQLite and PostgreSQL storages, workers side by side, pruning."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.config.experiment import load_experiment_config
from solver.train.tune import HEADER, default_storage, load_study, open_storage, tune
from tests.conftest import run_solver, solver_command
from tests.synthetic import TINY_EXPERIMENT, make_competition

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
FAST = {**TINY_EXPERIMENT, "data": {"image_size": 16, "batch_size": 8}, "train": {**TINY_EXPERIMENT["train"], "epochs": 1}}


def tuned_competition(tmp_path, tune_block: dict, n_train: int = 24, experiment: dict = FAST):
    make_competition(tmp_path, n_train=n_train, n_test=4, size=16, experiment={**experiment, "tune": tune_block})
    return Competition.load(tmp_path, "synth")


def study_of(comp, name: str = "tiny"):
    return optuna.load_study(study_name=name, storage=default_storage(comp))


def finished(study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def test_tune_writes_the_best_trial_as_an_experiment_of_differences(tmp_path):
    space = {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}, "data.batch_size": {"choices": [4, 8]}}
    comp = tuned_competition(tmp_path, {"params": space, "seed": 0, "pruner": "none"})
    out = tune(tmp_path, "synth", "tiny", trials=2)

    assert out == comp.folder / "configs" / "tiny_tuned.yaml"
    text = out.read_text()
    assert text.startswith(HEADER) and "the best of 2 complete and 0 pruned trials of study 'tiny'" in text and "on fold(s) 0;" in text
    study = study_of(comp)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    written = yaml.safe_load(text)
    assert "tune" not in written  # the tuned experiment does not tune again
    assert written["train"]["lr"] == pytest.approx(study.best_trial.params["train.lr"])
    assert written["data"]["batch_size"] == study.best_trial.params["data.batch_size"]
    assert written["model"] == FAST["model"] and written["augment"] == FAST["augment"]  # the rest of the file, as it was
    load_experiment_config(out)
    # Each trial trained in its own run folder; the study's value is the fold's best score.
    for t in study.trials:
        assert (comp.runs_dir / f"tiny_tune/trial{t.number:04d}/fold0/best.pt").is_file()
    # Run again: the study already holds 2 finished trials, none is added, the file is rewritten.
    tune(tmp_path, "synth", "tiny", trials=2)
    assert len(study_of(comp).trials) == 2


def test_two_workers_on_one_study_run_exactly_the_trials_asked_for(repo, tmp_path):
    # One tune.seed for both workers started together: each trial still samples its own values.
    comp = tuned_competition(tmp_path, {"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "pruner": "none", "seed": 0})
    command = solver_command("tune", "--root", str(tmp_path), "--comp", "synth", "--exp", "tiny", "--trials", "3", "--jobs", "2")
    workers = [subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
        assert "threads: 1 of" in out or "1 thread each" in out  # each took its share of the cores

    study = study_of(comp)
    done = finished(study)
    assert len(done) == 3
    # No trial ran twice: each finished trial number was announced by one worker only, and trained one run folder.
    announced = [line.split(":")[0] for out, _ in outputs for line in out.splitlines() if line.startswith("trial ") and " accuracy " in line]
    assert sorted(announced) == sorted(f"trial {t.number}" for t in done)
    assert len({t.user_attrs["worker"] for t in done}) >= 1
    folders = sorted(p.name for p in (comp.runs_dir / "tiny_tune").iterdir())
    assert set(folders) >= {f"trial{t.number:04d}" for t in done}
    assert all(t.state == TrialState.FAIL and "surplus" in t.user_attrs for t in study.trials if t not in done)
    assert len({t.params["train.lr"] for t in done}) == 3  # no two trials ran the same values


@pytest.mark.parametrize("warmup", [0, 1])
def test_the_pruner_stops_a_trial_far_worse_than_the_first(tmp_path, warmup):
    experiment = {**FAST, "train": {**FAST["train"], "epochs": 3, "lr": 3e-3}}
    block = {"params": {"train.lr": {"low": 1e-9, "high": 1e-2, "log": True}}, "startup_trials": 1, "warmup_epochs": warmup}
    comp = tuned_competition(tmp_path, block, n_train=48, experiment=experiment)
    study = load_study(comp, load_experiment_config(comp.experiment_path("tiny")).tune, "tiny", default_storage(comp))
    study.enqueue_trial({"train.lr": 3e-3})  # learns the squares
    study.enqueue_trial({"train.lr": 1e-9})  # learns nothing: stays at chance
    tune(tmp_path, "synth", "tiny", trials=2)

    good, bad = study_of(comp).trials
    assert good.state == TrialState.COMPLETE and good.value > 0.6
    assert bad.state == TrialState.PRUNED
    assert warmup < max(bad.intermediate_values) < 3  # stopped before its last epoch, never within the warmup epochs
    metrics = (comp.runs_dir / "tiny_tune/trial0001/fold0.partial/metrics.csv").read_text().splitlines()
    assert len(metrics) - 1 < 3


def test_under_torchrun_rank_0_samples_and_every_rank_trains_and_prunes_the_same_trial(repo, tmp_path):
    experiment = {**FAST, "data": {"image_size": 16, "batch_size": 4, "num_workers": 0}, "train": {**FAST["train"], "epochs": 3}}
    block = {"params": {"train.lr": {"low": 1e-9, "high": 1e-2, "log": True}}, "startup_trials": 1, "warmup_epochs": 0}
    comp = tuned_competition(tmp_path, block, n_train=48, experiment=experiment)
    study = load_study(comp, load_experiment_config(comp.experiment_path("tiny")).tune, "tiny", default_storage(comp))
    study.enqueue_trial({"train.lr": 3e-3})
    study.enqueue_trial({"train.lr": 1e-9})
    tune_command = solver_command("tune", "--root", str(tmp_path), "--comp", "synth", "--exp", "tiny", "--trials", "2")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *tune_command[1:]]  # torchrun -m solver tune
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # A rank that trained another trial, or stopped at another epoch, would have hung DDP's all-reduce or the barriers.
    good, bad = study_of(comp).trials
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    assert proc.stdout.count("trial 0: train.lr=0.003") == 1 and proc.stdout.count("trial 1: pruned") == 1  # rank 0 alone says it
    assert "2 processes (cpu) x batch 4" in proc.stdout


@pytest.mark.parametrize(
    "block, message",
    [
        ({"params": {"train.lrr": {"low": 1e-4, "high": 1e-2}}}, r"tune.params: 'train.lrr' is not an experiment key .*did you mean 'lr'"),
        ({"params": {"optim.lr": {"low": 1e-4, "high": 1e-2}}}, r"'optim.lr' is not an experiment key"),
        (
            {"params": {"train.lr": {"low": 1e-2, "high": 1e-4}}},
            r"tune.params.train.lr': the range \[0.01, 0.0001\] is empty; low must be below high",
        ),
        ({"params": {"model.name": {"choices": []}}}, r"tune.params.model.name': choices is empty"),
        ({"params": {"train.lr": {"low": 0.0, "high": 1e-2, "log": True}}}, r"log: true needs low > 0"),
        ({"params": {"train.lr": {"low": -1.0, "high": 1e-2}}}, r"tune.params.train.lr: -1.0 makes an invalid experiment: key 'train.lr'"),
        ({"params": {"train.folds": {"choices": [0, 1]}}}, r"'train.folds' cannot be tuned"),
        ({"params": {}}, r"tune.params is empty"),
        ({"params": {"train.lr": {"low": 1e-4, "high": 1e-2}}, "folds": [5]}, r"tune.folds: fold 5 does not exist; synth has folds 0..1"),
    ],
)
def test_a_bad_tune_block_is_one_clear_line_before_any_trial(tmp_path, block, message):
    comp = tuned_competition(tmp_path, block)
    with pytest.raises(SolverError, match=message):
        tune(tmp_path, "synth", "tiny", trials=1)
    assert not (comp.runs_dir / "tiny_tune").exists()


def test_an_unreachable_storage_is_one_clear_line(repo, tmp_path):
    tuned_competition(tmp_path, {"params": {"train.lr": {"low": 1e-4, "high": 1e-2}}})
    url = "postgresql://solver:secret@127.0.0.1:9/optuna"  # the discard port: nothing listens on loopback
    proc = run_solver("tune", "--root", str(tmp_path), "--comp", "synth", "--exp", "tiny", "--storage", url)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tune storage postgresql://solver:***@127.0.0.1:9/optuna: cannot open it")
    assert "secret" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_hand_written_tuned_file_is_never_overwritten(tmp_path):
    comp = tuned_competition(tmp_path, {"params": {"train.lr": {"low": 1e-4, "high": 1e-2}}})
    mine = comp.folder / "configs/tiny_tuned.yaml"
    mine.write_text("train: {lr: 0.001}\n")
    with pytest.raises(SolverError, match="tiny_tuned.yaml exists and was not written by make tune"):
        tune(tmp_path, "synth", "tiny", trials=1)
    assert mine.read_text() == "train: {lr: 0.001}\n"


# ----------------------------------------------------------------------------------------------------------
# PostgreSQL: a throwaway server in tmp (initdb + pg_ctl, as a non-root user when run as root); skipped without one


def _pg_bin() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))  # initdb and createdb lie beside it
    versions = sorted(os.listdir("/usr/lib/postgresql")) if os.path.isdir("/usr/lib/postgresql") else []
    return f"/usr/lib/postgresql/{versions[-1]}/bin" if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    pytest.importorskip("psycopg2", reason="psycopg2-binary is not installed")
    # Not under pytest's tmp folder: its parents are private to this user, and the server may run as another.
    folder = Path(tempfile.mkdtemp(prefix="solver-pg-"))
    data, port = folder / "data", _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as an unprivileged user
        import pwd

        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.skip("running as root without a 'postgres' user for the server")
        shutil.chown(folder, user)
        os.chmod(folder, 0o777)
        as_user = ["runuser", "-u", user, "--"]

    def run(*args):
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    init = run(f"{bindir}/initdb", "-D", str(data), "-U", "solver", "--auth=trust", "-E", "UTF8")
    if init.returncode != 0:
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    start = run(f"{bindir}/pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-w", "-o", f"-p {port} -k {folder} -h 127.0.0.1", "start")
    if start.returncode != 0:
        pytest.skip(f"the PostgreSQL server did not start: {start.stderr.strip()[-300:]}")
    try:
        created = run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "solver", "optuna")
        if created.returncode != 0:
            pytest.skip(f"createdb failed: {created.stderr.strip()[-300:]}")
        yield f"postgresql://solver@127.0.0.1:{port}/optuna"
    finally:
        run(f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_a_study_on_postgresql(repo, tmp_path, postgres):
    comp = tuned_competition(tmp_path, {"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "pruner": "none"})
    command = solver_command("tune", "--root", str(tmp_path), "--comp", "synth", "--exp", "tiny", "--trials", "2")
    workers = [
        subprocess.Popen([*command, "--storage", postgres], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="tiny", storage=open_storage(postgres))  # postgresql://: psycopg2 or psycopg 3
    assert len(finished(study)) == 2
    assert not (comp.runs_dir / "optuna.db").exists()  # the server held the study, not a local file
    assert (comp.folder / "configs/tiny_tuned.yaml").read_text().count("postgresql://solver@127.0.0.1") == 1


def test_a_tune_or_track_block_added_later_keeps_the_finished_folds_comparable():
    from solver.config.experiment import ExperimentConfig
    from solver.runs.compatibility import config_difference

    before = ExperimentConfig().model_dump(mode="json")
    after = ExperimentConfig.model_validate(
        {"tune": {"params": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}}, "track": {"mlflow": True}}
    ).model_dump(mode="json")
    assert config_difference({"config": before}, {"config": after}) is None  # they do not change what a fold learns
