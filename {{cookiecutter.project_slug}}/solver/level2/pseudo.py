"""Fold-safe pseudo-labels: `make pseudo COMP=c EXP=e` -> runs/<comp>/<exp>/pseudo/, a source like any other.

Fold k retrains (from the experiment's starting weights, on the same folds) with its training rows plus the test
rows that fold k's OWN model labelled confidently. That model trained on the other folds only, so its test labels
carry nothing of fold k's validation labels and fold k's OOF score stays honest. Labels from the fold-averaged
test.csv would not: every other fold's model saw fold k's rows, and a test image close to one of them would bring
its label into fold k's training set (a CV that rises even when the training labels are noise).

Settings (`pseudo:` in the experiment file, or ARGS="pseudo.threshold=0.95"):
  threshold | top_fraction   which test rows: predicted at least this confidently, or the most confident fraction
  labels: hard | soft        the predicted class (multilabel: the labels above 0.5), or the predicted probabilities
  weight                     a pseudo row's share of the loss against a training row's (multiclass)
  epochs                     the retrain's number of epochs (default: the experiment's train.epochs)

Layout of runs/<comp>/<exp>/pseudo/: fold<k>/ as an experiment's folds, labels_fold<k>.csv (the test rows fold k
trained on, with their targets), oof.csv, test.csv, score.json, config.yaml.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from solver.base.atomic import write_csv
from solver.base.errors import SolverError
from solver.competition.contract import read_csv
from solver.nn.curriculum import check_schedules
from solver.nn.data import ImageDataset
from solver.nn.runtime import resolve_device
from solver.runs.compatibility import config_difference, read_fold_config
from solver.runs.source import CONFIG_FILE, TEST_FILE, files_hash, read_score, stale_inputs
from solver.train.experiment import Experiment, load_experiment
from solver.train.fold_folders import finished_folds, fold_complete
from solver.train.predictions import aggregate
from solver.train.run import train_fold

DEFAULT_THRESHOLD = 0.9


@dataclasses.dataclass
class FoldPseudoLabels:
    """The test rows (indices into test.csv) fold k trains on, and their targets in the training targets' format."""

    rows: np.ndarray
    targets: np.ndarray
    confidence: np.ndarray


def confidence(probs: np.ndarray, task: str) -> np.ndarray:
    """How sure a model is of a row: its top class probability (multiclass), its least certain label (multilabel)."""
    return probs.max(axis=1) if task == "multiclass" else np.maximum(probs, 1 - probs).min(axis=1)


def select_rows(probs: np.ndarray, task: str, threshold: float | None, top_fraction: float | None) -> np.ndarray:
    """Test rows predicted at least `threshold` confidently, or the ceil(top_fraction * n) most confident ones."""
    sure = confidence(probs, task)
    if top_fraction is not None:
        n = int(np.ceil(top_fraction * len(probs)))
        return np.sort(np.argsort(-sure, kind="stable")[:n])
    return np.flatnonzero(sure >= (DEFAULT_THRESHOLD if threshold is None else threshold))


def uses_dense_targets(exp: Experiment) -> bool:
    """Class-probability rows instead of class indices: soft labels, or a weight (CrossEntropyLoss with probability
    targets computes -sum(t * log p), so a target scaled by w weighs that row by w)."""
    spec = exp.cfg.pseudo
    return exp.comp.cfg.task == "multilabel" or spec.labels == "soft" or spec.weight != 1.0


def pseudo_targets(probs: np.ndarray, task: str, labels: str, weight: float, dense: bool) -> np.ndarray:
    """The targets of the selected test rows: class indices, or (dense) class probabilities scaled by the weight."""
    if task == "multilabel":
        return (probs if labels == "soft" else (probs > 0.5)).astype(np.float32)
    if not dense:
        return probs.argmax(axis=1).astype(np.int64)
    hard = np.eye(probs.shape[1], dtype=np.float32)[probs.argmax(axis=1)]
    return (weight * (probs if labels == "soft" else hard)).astype(np.float32)


def training_targets(y: np.ndarray, num_classes: int, dense: bool) -> np.ndarray:
    """The training rows' targets in the same format as the pseudo rows' (one-hot when they are dense)."""
    if dense and y.ndim == 1:
        return np.eye(num_classes, dtype=np.float32)[y]
    return y


def check_settings(exp: Experiment, source) -> None:
    """Settings the retrain cannot honour fail here, in one line (source: the experiment file), before any fold trains."""
    spec, cfg, task = exp.cfg.pseudo, exp.cfg, exp.comp.cfg.task
    if task == "multilabel" and spec.weight != 1.0:
        raise SolverError(f"{source}: pseudo.weight {spec.weight}: a multilabel retrain weighs pseudo rows like training rows; set pseudo.weight: 1")
    mixes = any(stage.mixup_alpha or stage.cutmix_alpha for stage in cfg.train.resolved_stages(cfg.data.image_size))
    if mixes and task == "multiclass" and uses_dense_targets(exp):
        raise SolverError(
            f"{source}: pseudo.labels={spec.labels} with pseudo.weight={spec.weight}: MixUp/CutMix mix class indices only; "
            "use pseudo.labels: hard with pseudo.weight: 1, or train.mixup_alpha=0 train.cutmix_alpha=0"
        )
    if spec.epochs is not None and cfg.train.stages:
        raise SolverError(
            f"{source}: pseudo.epochs {spec.epochs} with train.stages: the curriculum sets the epochs; drop pseudo.epochs or the stages"
        )


def fold_pseudo_labels(exp: Experiment, k: int) -> FoldPseudoLabels:
    """Fold k's pseudo-labels, from fold k's own test predictions (fold<k>/test.csv, never the fold average)."""
    comp, spec, id_col = exp.comp, exp.cfg.pseudo, exp.comp.cfg.id_column
    path = exp.fold_dir(k) / TEST_FILE
    probs = read_csv(path, f"fold {k} test predictions").set_index(id_col).loc[exp.test_df[id_col], comp.classes].to_numpy(dtype=float)
    rows = select_rows(probs, comp.cfg.task, spec.threshold, spec.top_fraction)
    sure = confidence(probs, comp.cfg.task)
    if not len(rows):
        raise SolverError(
            f"{path}: fold {k}'s model is {spec.threshold or DEFAULT_THRESHOLD} confident on no test row (at most {sure.max():.3f}); "
            "lower pseudo.threshold or use pseudo.top_fraction"
        )
    targets = pseudo_targets(probs[rows], comp.cfg.task, spec.labels, spec.weight, uses_dense_targets(exp))
    return FoldPseudoLabels(rows, targets, sure[rows])


def with_pseudo_rows(exp: Experiment, labels: dict[int, FoldPseudoLabels]):
    """Experiment.extend_training: fold k's training rows, then its pseudo-labelled test rows."""
    dense = uses_dense_targets(exp)

    def extend(train_ds: ImageDataset, k: int) -> ImageDataset:
        fold = labels[k]
        paths = train_ds.paths + [exp.test_paths[i] for i in fold.rows]
        targets = np.concatenate([training_targets(train_ds.targets, exp.comp.num_classes, dense), fold.targets])
        images = None if train_ds.images is None else train_ds.images + [exp.test_images[i] for i in fold.rows]
        return ImageDataset(paths, targets, train_ds.transform, images, train_ds.channels)

    return extend


def pseudo_run(exp: Experiment, labels: dict[int, FoldPseudoLabels]) -> Experiment:
    """The pseudo-label run: <exp>/pseudo/ with the same folds, its settings and its labels' origin in every fold's config."""
    cfg = exp.cfg.model_copy(deep=True)
    if cfg.pseudo.epochs is not None:
        cfg.train.epochs = cfg.pseudo.epochs
    settings = cfg.pseudo.model_dump(mode="json")
    settings["from"] = files_hash([exp.fold_dir(k) / TEST_FILE for k in range(exp.n_folds)])  # the fold models that labelled
    run = dataclasses.replace(exp, name=f"{exp.name}/pseudo", cfg=cfg, kind="pseudo", extra_config={"pseudo_labels": settings})
    run.extend_training = with_pseudo_rows(run, labels)
    return run


def _folds_to_train(run: Experiment, fresh: bool) -> tuple[list[int], list[int]]:
    """(folds to train, of those the ones to start over). A finished pseudo fold is kept when nothing changed; one
    labelled by fold models retrained since starts over; one of other pseudo settings needs FRESH."""
    current = run.resolved_config()
    todo, restart = [], []
    for k in range(run.n_folds):
        if not (run.fold_dir(k) / CONFIG_FILE).is_file():
            todo.append(k)
            continue
        recorded = read_fold_config(run.fold_dir(k))
        difference = config_difference(current, recorded)
        relabelled = (recorded.get("pseudo_labels") or {}).get("from") != current["pseudo_labels"]["from"]
        if difference and not (fresh or relabelled):
            raise SolverError(
                f"{run.fold_dir(k)} finished with other settings ({difference}); FRESH=1 (--fresh) retrains it with these "
                f"(its results stay until every fold is replaced), or RUN=<run folder> (--name) for a run of its own"
            )
        if fresh or difference or not fold_complete(run, k):
            todo.append(k)
            if fresh or relabelled:
                restart.append(k)
    return todo, restart


def pseudo_experiment(root, comp_name: str, exp_name: str, overrides=(), fresh: bool = False, run_name: str | None = None) -> dict | None:
    """Retrain every fold with its own model's pseudo-labels and join them into <exp>/pseudo/ (a leaderboard row)."""
    exp = load_experiment(root, comp_name, exp_name, overrides, run_name=run_name, training=True)
    check_settings(exp, exp.comp.experiment_path(exp_name))
    missing = [k for k in range(exp.n_folds) if not fold_complete(exp, k)]
    if missing:
        raise SolverError(
            f"{exp.dir}: fold {missing[0]} is not trained; pseudo-labels come from every fold's own model: "
            f"make train COMP={comp_name} EXP={exp_name} first"
        )
    finished_folds(exp)  # the folds were trained with this config
    labels = {k: fold_pseudo_labels(exp, k) for k in range(exp.n_folds)}
    run = pseudo_run(exp, labels)
    check_schedules(run.cfg, int((exp.folds != 0).sum()) + len(labels[0].rows), exp.comp.metric.greater_is_better)
    todo, restart = _folds_to_train(run, fresh)
    score = read_score(run.dir)
    if not todo and score is not None:
        if stale_inputs(run.dir):  # the experiment's folds were retrained and labelled the same rows alike: the folds hold
            print(f"{comp_name}/{run.name}: the retrained folds of {exp.name} give the same pseudo-labels; joined again")
            with run.lock():
                return aggregate(run)
        print(f"{comp_name}/{run.name} is complete (CV {score['metric']} {score['cv']:.4f}): nothing to train; FRESH=1 retrains it")
        return score
    _write_labels(run, labels)
    device = resolve_device(run.cfg.train.device)
    for k in todo:
        fold = labels[k]
        print(
            f"fold {k}: {len(fold.rows)}/{len(exp.test_df)} test rows pseudo-labelled by fold {k}'s model (confidence >= {fold.confidence.min():.3f})"
        )
        result = train_fold(run, k, k in restart, device)
        print(f"fold {k}: best {exp.comp.metric.name} {result['score']:.4f} at epoch {result['epoch']}")
    with run.lock():
        return aggregate(run)


def _write_labels(run: Experiment, labels: dict[int, FoldPseudoLabels]) -> None:
    """labels_fold<k>.csv: which test rows fold k trained on, how sure its model was, and the targets it got."""
    comp, id_col = run.comp, run.comp.cfg.id_column
    for k, fold in labels.items():
        frame = pd.DataFrame({id_col: run.test_df[id_col].to_numpy()[fold.rows], "confidence": fold.confidence})
        if fold.targets.ndim == 1:
            frame["target"] = [comp.classes[i] for i in fold.targets]
        else:
            frame = pd.concat([frame, pd.DataFrame(fold.targets, columns=comp.classes)], axis=1)
        write_csv(frame, run.dir / f"labels_fold{k}.csv")
