"""MLflow tracking beside TensorBoard, opt-in with `track: {mlflow: true}` in the experiment.

One MLflow run per `make train` (and per `make tune` trial): the resolved config as params (flattened dotted keys)
and as config.yaml, every epoch's metrics.csv row as metrics `fold<k>/<column>` at step = epoch, and the CV score.
The store is runs/<comp>/mlflow.db (SQLite; artifacts in runs/<comp>/mlartifacts) unless track.uri names a server
(http://host:5000) or another store. Only the first process writes (RANK 0 under torchrun).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.config.experiment import ExperimentConfig, TrackSpec, load_experiment_config
from solver.nn import distributed
from solver.train.loop import epoch_callback

# A tracking server that does not answer fails in seconds, not after MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def store_uri(comp: Competition, spec: TrackSpec) -> str:
    return spec.uri or f"sqlite:///{(comp.runs_dir / 'mlflow.db').resolve()}"


def flat_params(cfg: ExperimentConfig) -> dict[str, str]:
    """The config as dotted keys (train.lr, model.name, ...); the search space of `make tune` is not a parameter of the run."""

    def walk(d: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
        for key, value in d.items():
            if isinstance(value, dict) and value:
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return {key: str(value) for key, value in walk(cfg.model_dump(mode="json", exclude={"tune"}))}


def _main_process() -> bool:
    # Called before train_experiment joins the process group: torchrun's RANK says which process this is.
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def mlflow_run(comp: Competition, cfg: ExperimentConfig, run_name: str, params: dict[str, str], tags: dict[str, str] | None = None):
    """An MLflow run that logs every epoch trained inside the block; yields log_score(score dict or None)."""
    import mlflow  # a second or more to import: only when tracking is on
    from mlflow.exceptions import MlflowException

    uri = store_uri(comp, cfg.track)
    experiment = cfg.track.experiment or comp.name
    try:
        mlflow.set_tracking_uri(uri)
        comp.runs_dir.mkdir(parents=True, exist_ok=True)
        with distributed.locked(comp.runs_dir / ".mlflow.lock", "the MLflow store"):  # fold jobs side by side create it once
            if mlflow.get_experiment_by_name(experiment) is None:
                artifacts = None if cfg.track.uri else (comp.runs_dir / "mlartifacts").resolve().as_uri()
                mlflow.create_experiment(experiment, artifact_location=artifacts)
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name, tags=tags)
    except (MlflowException, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SolverError(
            f"track.uri {uri}: MLflow cannot log there ({reason[:300]}); start the server, fix track.uri, or set track.mlflow=false"
        ) from None

    def log_epoch(fold: int | None, row: dict) -> None:
        if not distributed.is_main():
            return
        prefix = f"fold{fold}/" if fold is not None else ""
        values = {f"{prefix}{key}": float(v) for key, v in row.items() if isinstance(v, int | float) and math.isfinite(v) and key != "epoch"}
        mlflow.log_metrics(values, step=int(row["epoch"]))

    def log_score(score: dict | None) -> None:
        if score is not None:
            mlflow.log_metrics({f"cv_{score['metric']}": score["cv"], **({"holdout": score["holdout"]} if score.get("holdout") is not None else {})})

    status = "FAILED"
    try:
        mlflow.log_params(params)
        mlflow.log_dict(params, "config.json")
        with epoch_callback(log_epoch):
            yield log_score
        status = "FINISHED"
    finally:
        mlflow.end_run(status=status)
        print(f"MLflow: run {run.info.run_id} ({run_name}) in {uri}, experiment {experiment}")


@contextmanager
def tracked(root: Path, comp_name: str, exp_name: str, overrides=(), run_name: str | None = None, tags: dict[str, str] | None = None):
    """Around a training: an MLflow run when the experiment's track.mlflow is on (yields log_score), else nothing to log."""
    comp = Competition.load(root, comp_name)
    cfg = load_experiment_config(comp.experiment_path(exp_name), overrides)
    if not cfg.track.mlflow or not _main_process():
        yield lambda score: None
        return
    params = {"competition": comp.name, "experiment": exp_name, "run": run_name or exp_name, "overrides": " ".join(overrides), **flat_params(cfg)}
    with mlflow_run(comp, cfg, run_name or exp_name, params, tags) as log_score:
        yield log_score


def train(root: Path, comp_name: str, exp_name: str, folds=None, overrides=(), fresh: bool = False, run_name: str | None = None):
    """solver.train.run.train_experiment, tracked in MLflow when the experiment asks for it."""
    from solver.train.run import train_experiment

    with tracked(root, comp_name, exp_name, overrides, run_name) as log_score:
        score = train_experiment(root, comp_name, exp_name, folds, overrides, fresh=fresh, run_name=run_name)
        log_score(score)
    return score
