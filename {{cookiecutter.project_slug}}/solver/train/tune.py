"""`make tune`: an Optuna search over the `tune:` block of an experiment, written back as <exp>_tuned.yaml.

    tune:
      trials: 20
      folds: [0]                      # what each trial trains; the objective is the mean of their best scores
      params:
        train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
        data.image_size: {choices: [16, 24, 32]}
        model.name: {choices: [resnet10t, resnet18]}

Each trial is a run of the experiment with its sampled values as overrides, in runs/<comp>/<study>_tune/trial<N>.
Optuna's MedianPruner watches the per-epoch best score of one fold (trial.report / should_prune after each epoch)
and stops a trial worse than the median of the earlier trials at that epoch.

The study lives in an Optuna RDB storage: runs/<comp>/optuna.db (SQLite) by default, or tune.storage / STORAGE=
(postgresql://...) shared by several processes or machines at once (Optuna's distributed mode: each asks the storage
for its next trial). `trials` is the number of finished (complete or pruned) trials the study holds at the end, what
every worker together runs. Under torchrun, rank 0 samples each trial and broadcasts it: every rank trains the same one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from solver.base.atomic import write_text
from solver.base.errors import SolverError, did_you_mean
from solver.competition.contract import Competition
from solver.config.experiment import ExperimentConfig, TuneParamSpec, TuneSpec, load_experiment_config
from solver.config.loader import read_yaml
from solver.nn import distributed
from solver.train.loop import epoch_callback
from solver.train.tracking import tracked

HEADER = "# Written by make tune"
# Keys a trial may not change: where it trains, and the search itself.
UNTUNABLE_PREFIXES = ("tune.", "track.", "train.folds", "train.device")
MAX_FAILURES_IN_A_ROW = 3  # a broken experiment fails every trial: stop instead of asking for more


# ----------------------------------------------------------------------------------------------------------
# The search space


def check_key(key: str, source: str) -> None:
    """A dotted key of the experiment config, e.g. train.lr; inside a free mapping (model.kwargs.x) anything goes."""
    if key.startswith(UNTUNABLE_PREFIXES):
        raise SolverError(f"{source}: tune.params: '{key}' cannot be tuned (it says where a trial trains or how the search runs); remove it")
    model: type[BaseModel] = ExperimentConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            where = ".".join(parts[:i]) or "the experiment"
            raise SolverError(
                f"{source}: tune.params: '{key}' is not an experiment key ({part!r} is not in {where}: {did_you_mean(part, model.model_fields)})"
            )
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        if i < len(parts) - 1 and getattr(annotation, "__origin__", None) is not dict:
            raise SolverError(f"{source}: tune.params: '{key}' goes inside {'.'.join(parts[: i + 1])}, which has no keys")
        return
    raise SolverError(f"{source}: tune.params: '{key}' is a section; name one of its keys, e.g. {key}.{next(iter(model.model_fields))}")


def _endpoints(param: TuneParamSpec) -> list[Any]:
    if param.type == "categorical":
        return list(param.choices or [])
    if param.type == "int":
        return [int(param.low), int(param.high)]
    return [param.low, param.high]


def override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: parse_overrides reads it back as the same value


def check_search_space(path: Path, spec: TuneSpec, base_overrides=()) -> None:
    """Every key exists and every end of every range (each choice) makes a valid experiment, before any trial."""
    if not spec.params:
        raise SolverError(
            f"{path}: tune.params is empty; add the ranges to search, e.g. " + "tune: {params: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}"
        )
    for key, param in spec.params.items():
        check_key(key, str(path))
        if param.type == "categorical":
            bad = [c for c in param.choices if not (c is None or isinstance(c, bool | int | float | str))]
            if bad:
                raise SolverError(
                    f"{path}: tune.params.{key}: choice {bad[0]!r} is not a single value; Optuna's choices are numbers, text, true/false or null"
                )
        for value in _endpoints(param):
            try:
                load_experiment_config(path, [*base_overrides, override(key, value)])
            except SolverError as err:
                raise SolverError(f"{path}: tune.params.{key}: {value!r} makes an invalid experiment: {str(err).split(': ', 1)[-1]}") from None


def suggest(trial, params: dict[str, TuneParamSpec]) -> list[str]:
    """The trial's sampled values as config overrides."""
    overrides = []
    for key, p in params.items():
        if p.type == "categorical":
            value = trial.suggest_categorical(key, p.choices)
        elif p.type == "int":
            value = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            value = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
        overrides.append(override(key, value))
    return overrides


# ----------------------------------------------------------------------------------------------------------
# The study


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: shown as given
        return url


def _with_driver(url: str) -> str:
    """postgresql://... names no driver, and SQLAlchemy 2.1 then wants psycopg 3: use psycopg2 when only it is installed."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL: RDBStorage says so
        return url
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def open_storage(url: str):
    """An Optuna RDB storage, or one clear line saying why it cannot be opened."""
    import optuna
    import sqlalchemy.exc

    sqlite = url.startswith("sqlite")
    # SQLite: several local workers wait for the file's lock instead of failing; a server: a dropped connection is reopened.
    engine_kwargs = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    try:
        return optuna.storages.RDBStorage(_with_driver(url), engine_kwargs=engine_kwargs)
    except ImportError as err:
        raise SolverError(
            f"tune storage {_safe_url(url)}: its database driver is not installed ({err}); for PostgreSQL: pip install psycopg2-binary"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, optuna.exceptions.StorageInternalError) as err:
        reason = (str(getattr(err, "orig", None) or err).strip().splitlines() or [type(err).__name__])[0]
        raise SolverError(
            f"tune storage {_safe_url(url)}: cannot open it ({reason[:300]}); check the URL (postgresql://user:password@host:5432/db) "
            f"and that the server runs and is reachable, or leave STORAGE empty for SQLite in runs/"
        ) from None


def default_storage(comp: Competition) -> str:
    return f"sqlite:///{(comp.runs_dir / 'optuna.db').resolve()}"


def load_study(comp: Competition, spec: TuneSpec, study_name: str, storage_url: str):
    import optuna

    # Steps are epochs from 1, and MedianPruner prunes from step n_warmup_steps on: warmup_epochs epochs are never pruned.
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_epochs + 1) if spec.pruner == "median" else None
    )
    direction = "maximize" if comp.metric.greater_is_better else "minimize"
    comp.runs_dir.mkdir(parents=True, exist_ok=True)
    # Workers starting together on one SQLite file would race to create its tables and the study.
    with distributed.locked(comp.runs_dir / ".optuna.lock", "the Optuna study"):
        storage = open_storage(storage_url)
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction=direction,
            sampler=optuna.samplers.TPESampler(seed=spec.seed),
            pruner=pruner or optuna.pruners.NopPruner(),
            load_if_exists=True,
        )
    if study.direction.name.lower() != direction:
        raise SolverError(
            f"study '{study_name}' in {_safe_url(storage_url)} is to {study.direction.name.lower()}, "
            f"but {comp.cfg.metric} is to {direction}; use another study name (--study)"
        )
    return study


def _worker() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def fail_dead_trials(study) -> None:
    """Trials left RUNNING by a killed worker of this machine are marked failed (their slot is free again)."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        pid = worker.split()[1] if worker.startswith("pid ") and worker.endswith(f" on {host}") else None
        if pid is not None and not _alive(int(pid)):
            study.tell(t.number, state=TrialState.FAIL)
            print(f"trial {t.number}: its worker ({worker}) died; marked failed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def next_trial(study, n_trials: int, seed: int | None = None):
    """The next trial to run, or None once the study holds n_trials complete, pruned or running ones.

    Workers ask at the same time: the storage numbers the trials, and a trial with n_trials live ones before it
    is surplus (told failed at once, never run), so the finished trials end exactly at n_trials."""
    import optuna
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    if len(study.get_trials(deepcopy=False, states=live)) >= n_trials:
        return None
    trial = study.ask()
    trial.set_user_attr("worker", _worker())
    if seed is not None:
        # Each trial samples from tune.seed + its number: workers started with one seed would otherwise all draw
        # the same values (the sampler's random stream is per process), and the study is still reproducible.
        study.sampler = optuna.samplers.TPESampler(seed=seed + trial.number)
    ahead = [t for t in study.get_trials(deepcopy=False, states=live) if t.number < trial.number]
    if len(ahead) >= n_trials:
        trial.set_user_attr("surplus", f"{n_trials} trials were already running or finished")
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


# ----------------------------------------------------------------------------------------------------------
# One trial


class _Pruned(Exception):
    """Raised in every rank's epoch callback when rank 0's pruner stops the trial."""


def run_trial(root: Path, comp: Competition, exp_name: str, spec: TuneSpec, trial, overrides: list[str], number: int, run_dir: str) -> float:
    """Train the trial's folds; returns the mean best score; raises _Pruned when the pruner stops it."""
    prune_fold = spec.prune_fold if spec.prune_fold is not None else spec.folds[0]
    best: dict[int, float] = {}

    def report(fold: int | None, row: dict) -> None:
        best[fold] = row["best"]
        if fold != prune_fold:
            return
        prune = False
        if trial is not None:  # rank 0
            trial.report(row["best"], row["epoch"])
            prune = trial.should_prune()
        if distributed.from_main(prune):
            raise _Pruned(f"epoch {row['epoch']}: best {comp.metric.name} {row['best']:.4f} so far, below the median of earlier trials")

    run_name = f"{run_dir}/trial{number:04d}"
    with tracked(root, comp.name, exp_name, overrides, run_name, tags={"optuna.trial": str(number)}):
        with epoch_callback(report):
            from solver.train.run import train_experiment

            train_experiment(root, comp.name, exp_name, spec.folds, overrides, fresh=True, run_name=run_name)
    missing = [k for k in spec.folds if best.get(k) is None]
    if missing:
        raise SolverError(f"trial {number}: fold {missing[0]} reported no score")
    return sum(best[k] for k in spec.folds) / len(spec.folds)


# ----------------------------------------------------------------------------------------------------------
# The search


def tuned_path(comp: Competition, exp_name: str) -> Path:
    return comp.folder / "configs" / f"{exp_name}_tuned.yaml"


def check_tuned_path(path: Path) -> None:
    """A tuned file written by hand, or edited since, is never overwritten."""
    if path.is_file() and not path.read_text().startswith(HEADER):
        raise SolverError(f"{path} exists and was not written by make tune; rename or delete it, or tune into another study (--study)")


def write_tuned(source: Path, path: Path, overrides: list[str], header: str) -> Path:
    """The experiment file with the best trial's values set and without its tune block: only differences from the defaults."""
    from solver.config.experiment import deep_merge, parse_overrides

    data = deep_merge(read_yaml(source), parse_overrides(overrides))
    data.pop("tune", None)
    text = header + yaml.safe_dump(data, sort_keys=False)
    write_text(text, path)
    load_experiment_config(path)  # what make train will read
    return path


def tune(
    root: Path, comp_name: str, exp_name: str, trials: int | None = None, storage: str | None = None, study_name: str | None = None, overrides=()
) -> Path | None:
    """Run trials until the study holds `trials` finished ones, then write the best as <exp>_tuned.yaml (rank 0)."""
    comp = Competition.load(root, comp_name)
    source = comp.experiment_path(exp_name)
    cfg = load_experiment_config(source, overrides)
    spec = cfg.tune
    n_trials = trials or spec.trials
    unknown = [k for k in spec.folds if k not in range(comp.cfg.n_folds)]
    if unknown:
        raise SolverError(f"{source}: tune.folds: fold {unknown[0]} does not exist; {comp_name} has folds 0..{comp.cfg.n_folds - 1}")
    check_search_space(source, spec, overrides)
    out = tuned_path(comp, exp_name)
    check_tuned_path(out)
    study_name = study_name or spec.study or exp_name
    storage_url = storage or spec.storage or default_storage(comp)
    from solver.nn.runtime import resolve_device

    # Under torchrun the ranks join here, once for every trial (train_experiment's own session is then a no-op).
    with distributed.session(resolve_device(cfg.train.device)):
        main = distributed.is_main()
        study = load_study(comp, spec, study_name, storage_url) if main else None
        if main:
            fail_dead_trials(study)
            where = _safe_url(storage_url)
            print(f"tune {comp_name}/{exp_name}: study '{study_name}' in {where}, up to {n_trials} trials, {len(spec.params)} parameters")
        _trial_loop(root, comp, exp_name, spec, study, n_trials, list(overrides), f"{study_name}_tune")
    if not main:
        return None
    return _write_best(study, comp, source, out, list(overrides), storage_url, spec.folds)


def _trial_loop(root: Path, comp: Competition, exp_name: str, spec: TuneSpec, study, n_trials: int, base: list[str], run_dir: str) -> None:
    from optuna.trial import TrialState

    failures = 0
    while True:
        trial = next_trial(study, n_trials, spec.seed) if study is not None else None
        job = distributed.from_main(None if trial is None else (trial.number, [*base, *suggest(trial, spec.params)]))
        if job is None:
            return
        number, overrides = job
        start = time.perf_counter()
        say = print if study is not None else (lambda *_: None)
        say(f"trial {number}: {' '.join(overrides[len(base) :])}")
        try:
            value = run_trial(root, comp, exp_name, spec, trial, overrides, number, run_dir)
        except _Pruned as why:
            failures = 0
            if trial is not None:
                study.tell(trial, state=TrialState.PRUNED)
            say(f"trial {number}: pruned at {why} ({time.perf_counter() - start:.0f}s)")
            continue
        except SolverError as err:
            if trial is not None:
                trial.set_user_attr("error", str(err)[:1000])
                study.tell(trial, state=TrialState.FAIL)
            failures += 1
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise SolverError(f"{failures} trials in a row failed; the last one: {err}") from None
            say(f"trial {number}: failed: {err}")
            continue
        except BaseException:
            if trial is not None:
                study.tell(trial, state=TrialState.FAIL)
            raise
        failures = 0
        if trial is not None:
            study.tell(trial, value)
        say(f"trial {number}: {comp.metric.name} {value:.4f} ({time.perf_counter() - start:.0f}s)")


def _write_best(study, comp: Competition, source: Path, out: Path, base: list[str], storage_url: str, folds: list[int]) -> Path | None:
    from optuna.trial import TrialState

    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in (TrialState.COMPLETE, TrialState.PRUNED)}
    try:
        best = study.best_trial
    except ValueError:
        print(f"study '{study.study_name}': no trial completed ({counts['pruned']} pruned); nothing written")
        return None
    params = [override(key, value) for key, value in best.params.items()]
    header = (
        f"{HEADER} from {source.name}: the best of {counts['complete']} complete and {counts['pruned']} pruned trials of study "
        f"'{study.study_name}' in {_safe_url(storage_url)}\n"
        f"# trial {best.number}: {comp.metric.name} {best.value:.4f} on fold(s) {', '.join(map(str, folds))}; {time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    write_tuned(source, out, [*base, *params], header)
    print(f"best trial {best.number}: {comp.metric.name} {best.value:.4f} with {' '.join(params)}; written to {out}")
    print(f"next: make train COMP={comp.name} EXP={out.stem}")
    return out
