"""MLflow beside TensorBoard: opt-in with track.mlflow, a local SQLite store under runs/ by default, read back with MLflow's client."""

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.config.experiment import TrackSpec
from solver.train.tracking import store_uri, train
from tests.synthetic import TINY_EXPERIMENT, make_competition

TRACKED = {**TINY_EXPERIMENT, "data": {"image_size": 16, "batch_size": 8}, "track": {"mlflow": True}}


def test_a_tracked_training_logs_params_epochs_and_the_score(tmp_path):
    make_competition(tmp_path, n_train=24, n_test=4, size=16, experiment=TRACKED)
    score = train(tmp_path, "synth", "tiny", overrides=["train.lr=0.002"])
    comp = Competition.load(tmp_path, "synth")

    assert (comp.runs_dir / "mlflow.db").is_file()
    client = MlflowClient(store_uri(comp, TrackSpec()))  # the default store
    experiment = client.get_experiment_by_name("synth")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    params = run.data.params
    assert params["train.lr"] == "0.002" and params["model.name"] == "test_resnet" and params["overrides"] == "train.lr=0.002"
    assert not any(key.startswith("tune.") for key in params)
    assert run.data.metrics["cv_accuracy"] == pytest.approx(score["cv"])
    for k in (0, 1):  # every epoch of every fold, at step = epoch, as in its metrics.csv
        history = client.get_metric_history(run.info.run_id, f"fold{k}/accuracy")
        metrics = pd.read_csv(comp.runs_dir / f"tiny/fold{k}/metrics.csv")
        assert [m.step for m in history] == list(metrics["epoch"])
        assert [m.value for m in history] == pytest.approx(list(metrics["accuracy"]))
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["config.json"]
    assert (comp.runs_dir / "mlartifacts").is_dir()  # artifacts under runs/ too, not in the working folder


def test_tracking_is_off_unless_asked_for(tmp_path):
    make_competition(tmp_path, n_train=16, n_test=4, size=16, experiment={**TRACKED, "track": {}, "train": {**TRACKED["train"], "epochs": 1}})
    train(tmp_path, "synth", "tiny")
    runs = tmp_path / "runs/synth"
    assert (runs / "tiny/score.json").is_file()
    assert not (runs / "mlflow.db").exists() and not (runs / "mlartifacts").exists()


def test_an_unreachable_tracking_server_is_one_clear_line_before_training(tmp_path):
    make_competition(tmp_path, n_train=16, n_test=4, size=16, experiment={**TRACKED, "track": {"mlflow": True, "uri": "http://127.0.0.1:9"}})
    with pytest.raises(SolverError, match=r"track.uri http://127.0.0.1:9: MLflow cannot log there .*set track.mlflow=false"):
        train(tmp_path, "synth", "tiny")
    assert not (tmp_path / "runs/synth/tiny").exists()


def test_each_tune_trial_is_a_run_of_its_own(tmp_path):
    from solver.train.tune import tune

    block = {"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "pruner": "none", "seed": 0}
    make_competition(tmp_path, n_train=16, n_test=4, size=16, experiment={**TRACKED, "train": {**TRACKED["train"], "epochs": 1}, "tune": block})
    tune(tmp_path, "synth", "tiny", trials=2)
    comp = Competition.load(tmp_path, "synth")
    client = MlflowClient(store_uri(comp, TrackSpec()))
    runs = client.search_runs([client.get_experiment_by_name("synth").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["tiny_tune/trial0000", "tiny_tune/trial0001"]
    assert sorted(r.data.tags["optuna.trial"] for r in runs) == ["0", "1"]
    assert all(len(client.get_metric_history(r.info.run_id, "fold0/accuracy")) == 1 for r in runs)
