"""`make adapt`: adapt a source's predictions to the test distribution, as a new source with its own leaderboard row.

<comp>/adapt/<name>.yaml (AdaptConfig) names the input source and the method:

  prior_shift   re-weight the posteriors to the test's class priors, given or estimated by EM (solver/adapt/prior_shift.py)
  head_tuning   retrain the classifier head on frozen embeddings with a target set (solver/adapt/head_tuning.py)
  thresholds    per-label thresholds fitted on OOF for a multilabel metric (solver/adapt/thresholds.py)

Every method keeps the OOF honest: a row's adapted OOF prediction uses no label of its own fold, so the new
source's CV is comparable with its input's on the leaderboard.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from solver.adapt.prior_shift import (
    adjust,
    adjust_labels,
    apply_temperature,
    calibrate_folds,
    class_priors,
    estimate_label_priors,
    estimate_priors,
    fit_temperature,
    fold_temperatures,
)
from solver.adapt.thresholds import ensure_one_label, fit_thresholds, fold_safe_thresholds, frequency_thresholds, to_decision_scale
from solver.base.errors import SolverError, did_you_mean
from solver.competition.contract import Competition, read_csv
from solver.competition.metrics import get_metric
from solver.config.adapt import AdaptConfig
from solver.config.loader import read_yaml, validate
from solver.level2.stages import training_frame
from solver.runs.source import BEST_CHECKPOINT, TEST_FILE, check_sources, load_source, write_source

SUM_TOLERANCE = 1e-6


def load_adapt_config(comp: Competition, name: str) -> tuple[AdaptConfig, Path]:
    path = comp.folder / "adapt" / f"{name}.yaml"
    if not path.is_file():
        found = sorted(p.stem for p in (comp.folder / "adapt").glob("*.yaml"))
        raise SolverError(f"{path} not found; adapt configs of {comp.name}: {', '.join(found) or 'none'}")
    if any((comp.runs_dir / name).glob("fold*")):
        raise SolverError(f"'{name}' is already an experiment's run folder ({comp.runs_dir / name}); give the adapt config another name")
    cfg = validate(AdaptConfig, read_yaml(path), str(path))
    if cfg.source == name:
        raise SolverError(f"{path}: key 'source': '{name}' would adapt itself; name the source to adapt, e.g. an experiment")
    return cfg, path


def class_vector(value, comp: Competition, path: Path, key: str, sums_to_one: bool) -> np.ndarray:
    """A per-class list (class order) or {class: value} mapping from a config, checked against the class list."""
    classes = comp.classes
    if isinstance(value, dict):
        unknown = [c for c in value if c not in classes]
        if unknown:
            raise SolverError(f"{path}: key '{key}': {unknown[0]!r} is not a class of {comp.name} ({did_you_mean(unknown[0], classes)})")
        missing = [c for c in classes if c not in value]
        if missing:
            raise SolverError(f"{path}: key '{key}': no value for class(es) {missing[:5]}; give one for every class")
        vector = np.array([value[c] for c in classes], dtype=float)
    else:
        if len(value) != len(classes):
            raise SolverError(
                f"{path}: key '{key}': {len(value)} values for {len(classes)} classes; give one per class in the order "
                f"{', '.join(classes[:12])}{' ...' if len(classes) > 12 else ''}, or a mapping class: value"
            )
        vector = np.asarray(value, dtype=float)
    if (vector < 0).any() or not np.isfinite(vector).all():
        bad = int(np.argmax(~np.isfinite(vector) | (vector < 0)))
        raise SolverError(f"{path}: key '{key}': class {classes[bad]!r} has {vector[bad]}; values must be non-negative")
    if sums_to_one and abs(vector.sum() - 1) > SUM_TOLERANCE:
        raise SolverError(f"{path}: key '{key}': the values sum to {vector.sum():.6g}, not 1; priors of the classes must sum to 1")
    if not sums_to_one and (vector > 1).any():
        bad = int(np.argmax(vector > 1))
        raise SolverError(f"{path}: key '{key}': label {classes[bad]!r} has {vector[bad]}; a label's frequency is within [0, 1]")
    return vector


def _fmt(values: np.ndarray, classes: list[str]) -> str:
    return ", ".join(f"{c} {v:.3f}" for c, v in zip(classes[:12], values)) + (" ..." if len(classes) > 12 else "")


# ----------------------------------------------------------------------------------------------------------
# The methods: each returns (oof, test, extra) for write_source


def fold_test_predictions(comp: Competition, name: str, test_ids: pd.Series) -> list[np.ndarray] | None:
    """Each fold model's own test predictions of a source (test.csv rows order), or None when the source has none.

    An experiment keeps them in <exp>/fold<k>/test.csv, its TTA variant <exp>/tta<N> in <exp>/fold<k>/test_tta<N>.csv;
    ensembles, stacks and adapted sources only have the fold-averaged test.csv.
    """
    experiment, _, variant = name.partition("/")
    files = [comp.runs_dir / experiment / f"fold{k}" / f"test{'_' + variant if variant else ''}.csv" for k in range(comp.cfg.n_folds)]
    if variant and not variant.startswith("tta") or not all(f.is_file() for f in files):
        return None
    id_col = comp.cfg.id_column
    return [read_csv(f, f"fold test predictions of {name}").set_index(id_col).loc[test_ids, comp.classes].to_numpy(dtype=float) for f in files]


def _calibrated(cfg: AdaptConfig, source, y: np.ndarray, folds: np.ndarray, multilabel: bool, fold_tests: list[np.ndarray] | None):
    """OOF and test posteriors after temperature scaling: fold k's OOF with a temperature fitted on the other folds;
    the test from each fold model's test predictions calibrated with that model's own temperature, averaged in logits
    (solver.adapt.prior_shift.calibrate_folds). A source without per-fold test predictions keeps its test posteriors: a
    temperature of single models would over-soften their average. (OOF, test, per-fold temperatures or None)."""
    if cfg.calibrate == "none":
        return source.oof, source.test, None
    oof = np.empty_like(source.oof)
    for k in np.unique(folds):
        rows = folds == k
        oof[rows] = apply_temperature(source.oof[rows], fit_temperature(source.oof[~rows], y[~rows], multilabel), multilabel)
    if fold_tests is None:
        print(f"temperature scaling: '{cfg.source}' has no per-fold test predictions; its test posteriors are used as they are")
        return oof, source.test, None
    temperatures = fold_temperatures(source.oof, y, folds, multilabel)
    return oof, calibrate_folds(fold_tests, temperatures, multilabel), temperatures


def _prior_shift(comp: Competition, cfg: AdaptConfig, path: Path, source, y: np.ndarray, folds: np.ndarray, fold_tests):
    multilabel = comp.cfg.task == "multilabel"
    given = None if cfg.priors == "estimate" else class_vector(cfg.priors, comp, path, "priors", sums_to_one=not multilabel)
    train_priors = class_priors(y, comp.num_classes)
    source_oof, source_test, temperatures = _calibrated(cfg, source, y, folds, multilabel, fold_tests)
    if given is None:
        if multilabel:
            test_priors = estimate_label_priors(source_test, train_priors)
            test, iterations = adjust_labels(source_test, train_priors, test_priors), None
        else:
            test_priors, test, iterations = estimate_priors(source_test, train_priors)
        # Each fold's OOF is adjusted to its own EM estimate, from the other folds' priors: no label of the fold is used.
        oof = np.empty_like(source_oof)
        for k in np.unique(folds):
            rows = folds == k
            fold_train = class_priors(y[~rows], comp.num_classes)
            if multilabel:
                oof[rows] = adjust_labels(source_oof[rows], fold_train, estimate_label_priors(source_oof[rows], fold_train))
            else:
                oof[rows] = estimate_priors(source_oof[rows], fold_train)[1]
    else:
        # Given priors describe the test set only; the OOF (training distribution) is only calibrated.
        test_priors = given
        test = adjust_labels(source_test, train_priors, test_priors) if multilabel else adjust(source_test, train_priors, test_priors)
        oof, iterations = source_oof, None
    if temperatures is not None:
        print(
            f"temperature scaling before the prior shift, per fold model: T = {', '.join(f'{t:.3f}' for t in temperatures)} "
            "(fitted on its OOF rows; below 1 sharpens an under-confident model); test: their calibrated mean logit"
        )
    print(f"training priors: {_fmt(train_priors, comp.classes)}")
    print(f"test priors ({'given' if given is not None else 'EM estimate'}): {_fmt(test_priors, comp.classes)}")
    extra = {
        "train_priors": dict(zip(comp.classes, map(float, train_priors))),
        "test_priors": dict(zip(comp.classes, map(float, test_priors))),
        "priors": "given" if given is not None else "estimate",
        "calibrate": cfg.calibrate,
        "temperature": temperatures,  # per fold model; None when not calibrated
        "em_iterations": iterations,
    }
    return oof, test, extra


def _threshold_metric(comp: Competition, cfg: AdaptConfig, path: Path):
    """None for macro F1 (fitted exactly per label), else a greater-is-better function of (y, decision-scale probs)."""
    if cfg.metric == "macro_f1":
        return None
    try:
        metric = comp.metric if cfg.metric == "competition" else get_metric(cfg.metric, "multilabel", threshold=comp.cfg.submission.threshold)
    except SolverError as err:
        raise SolverError(f"{path}: key 'metric': {err}; or 'competition' for {comp.name}'s own") from None
    return metric if metric.greater_is_better else (lambda t, p: -metric(t, p))


def _thresholds(comp: Competition, cfg: AdaptConfig, path: Path, source, y: np.ndarray, folds: np.ndarray):
    if comp.cfg.task != "multilabel":
        raise SolverError(
            f"{path}: key 'method': thresholds are for multilabel competitions; {comp.name} is {comp.cfg.task} "
            "(its label is the argmax); use prior_shift or head_tuning"
        )
    metric = _threshold_metric(comp, cfg, path)
    cut = comp.cfg.submission.threshold  # the stored values are cut where the metric and `make submit` cut
    oof, fold_thresholds = fold_safe_thresholds(y, source.oof, folds, metric, cut)
    thresholds = fit_thresholds(y, source.oof, metric, cut=cut)
    test_thresholds, frequencies = thresholds, None
    if cfg.expected_frequencies is not None:
        train_frequencies = class_priors(y, comp.num_classes)
        if cfg.expected_frequencies == "train":
            frequencies = train_frequencies
        elif cfg.expected_frequencies == "estimate":
            frequencies = estimate_label_priors(source.test, train_frequencies)
        else:
            frequencies = class_vector(cfg.expected_frequencies, comp, path, "expected_frequencies", sums_to_one=False)
        # The test's thresholds make each label as frequent on test as expected; OOF keeps the metric-fitted ones.
        test_thresholds = frequency_thresholds(source.test, frequencies)
    test = to_decision_scale(source.test, test_thresholds, cut)
    if cfg.at_least_one:
        oof, test = ensure_one_label(oof, cut), ensure_one_label(test, cut)
    at_cut = comp.metric(y, source.oof)
    print(f"thresholds: {_fmt(thresholds, comp.classes)}")
    print(f"OOF {comp.metric.name}: {at_cut:.4f} at {cut:g}, {comp.metric(y, oof):.4f} with fold-safe fitted thresholds")
    print(f"test label frequencies: {_fmt((test > cut).mean(axis=0), comp.classes)}")
    extra = {
        "metric_fitted": cfg.metric,
        "thresholds": dict(zip(comp.classes, map(float, thresholds))),
        "test_thresholds": dict(zip(comp.classes, map(float, test_thresholds))),
        "fold_thresholds": fold_thresholds.tolist(),
        "expected_frequencies": None if frequencies is None else dict(zip(comp.classes, map(float, frequencies))),
        "at_least_one": cfg.at_least_one,
        "decision_threshold": cut,  # the stored probabilities are on the decision scale: cut them here
    }
    return oof, test, extra


def _labelled_subset(comp: Competition, cfg: AdaptConfig, path: Path, train_ids: pd.Series, test_ids: pd.Series):
    """(train row indices, test row indices, test labels) of the labelled_subset CSV."""
    if cfg.labelled_subset is None:
        return np.array([], dtype=int), np.array([], dtype=int), None
    csv = Path(cfg.labelled_subset)
    csv = csv if csv.is_absolute() else comp.root / csv
    df = read_csv(csv, f"labelled_subset of {path}")
    id_col = comp.cfg.id_column
    if id_col not in df.columns:
        raise SolverError(f"{csv}: no id column {id_col!r}; columns found: {', '.join(df.columns)}")
    train_index, test_index = pd.Index(train_ids), pd.Index(test_ids)
    in_train, in_test = df[id_col].isin(train_index), df[id_col].isin(test_index)
    unknown = df[id_col][~in_train & ~in_test]
    if len(unknown):
        raise SolverError(f"{csv}: id {unknown.iloc[0]!r} (row {unknown.index[0] + 2}) is neither a training nor a test id of {comp.name}")
    test_rows = df[in_test]
    labels = None
    if len(test_rows):
        missing = [c for c in comp.target_columns if c not in df.columns]
        if missing:
            raise SolverError(f"{csv}: test ids need their labels, but column(s) {missing} are missing")
        labels = comp.encode_targets(test_rows.reset_index(drop=True), csv)  # a label outside the class list is an error naming the row
    return train_index.get_indexer(df[id_col][in_train]), test_index.get_indexer(test_rows[id_col]), labels


def _classifier(exp, k: int) -> nn.Linear:
    from solver.train.experiment import load_best  # the fold's checkpoint, loaded as training saved it

    classifier = load_best(exp, exp.fold_dir(k), torch.device("cpu"))[0].get_classifier()
    if not isinstance(classifier, nn.Linear):
        raise SolverError(f"{exp.fold_dir(k)}: the model's classifier is a {type(classifier).__name__}, not one linear layer; set init: fresh")
    return copy.deepcopy(classifier).float()


def _head_tuning(comp: Competition, cfg: AdaptConfig, path: Path, source, y: np.ndarray, folds: np.ndarray, train_ids, test_ids):
    from solver.adapt.head_tuning import FoldTarget, fold_safe_head_tuning, pseudo_labels
    from solver.predict.embeddings import embeddings
    from solver.train.experiment import load_experiment

    if not (comp.runs_dir / cfg.source / "fold0" / BEST_CHECKPOINT).is_file():
        raise SolverError(f"{path}: key 'source': head_tuning needs an experiment with fold checkpoints; '{cfg.source}' has none")
    exp = load_experiment(comp.root, comp.name, cfg.source, load_pixels=False)
    train_emb, test_emb = embeddings(exp)
    subset_train, subset_test, subset_labels = _labelled_subset(comp, cfg, path, train_ids, test_ids)
    id_col = comp.cfg.id_column
    targets = []
    for k in range(comp.cfg.n_folds):
        test_rows, test_labels = np.array([], dtype=int), np.zeros((0, *y.shape[1:]), dtype=y.dtype)
        if cfg.confidence is not None:
            # Pseudo-labels from fold k's own model: it never saw fold k's labels, so fold k's OOF stays honest.
            fold_test = read_csv(exp.fold_dir(k) / TEST_FILE, f"fold {k} test predictions").set_index(id_col).loc[test_ids, comp.classes]
            test_rows, test_labels = pseudo_labels(fold_test.to_numpy(dtype=float), comp.cfg.task, cfg.confidence)
            keep = ~np.isin(test_rows, subset_test)  # a row the user labelled keeps the user's label
            test_rows, test_labels = test_rows[keep], test_labels[keep]
        if len(subset_test):
            test_rows = np.concatenate([test_rows, subset_test])
            test_labels = np.concatenate([test_labels, subset_labels.astype(y.dtype) if y.ndim == 2 else subset_labels])
        targets.append(FoldTarget(test_rows, test_labels, subset_train[folds[subset_train] != k]))
    settings = cfg.head()
    init = [_classifier(exp, k) for k in range(comp.cfg.n_folds)] if cfg.init == "model" else None
    oof, test, info = fold_safe_head_tuning(train_emb, test_emb, y, folds, targets, comp.cfg.task, comp.num_classes, settings, init)
    for row in info:
        print(f"fold {row['fold']}: head trained on {row['train_rows']} training rows + {row['target_test_rows']} test rows of the target set")
    print(f"OOF {comp.metric.name}: {comp.metric(y, source.oof):.4f} before, {comp.metric(y, oof):.4f} after head tuning")
    extra = {
        "confidence": cfg.confidence,
        "labelled_subset": cfg.labelled_subset,
        "init": cfg.init,
        "head": settings.model_dump(),
        "folds_target": info,
    }
    return oof, test, extra


def adapt_stage(root: Path, comp_name: str, name: str) -> dict:
    comp = Competition.load(root, comp_name)
    cfg, path = load_adapt_config(comp, name)
    y, folds, train_ids, test_ids = training_frame(comp)
    source = load_source(comp, cfg.source, train_ids, test_ids)
    check_sources(comp, [source])  # same class list (labels) and folds file as the competition's
    if cfg.method == "prior_shift":
        oof, test, extra = _prior_shift(comp, cfg, path, source, y, folds, fold_test_predictions(comp, cfg.source, test_ids))
    elif cfg.method == "thresholds":
        oof, test, extra = _thresholds(comp, cfg, path, source, y, folds)
    else:
        oof, test, extra = _head_tuning(comp, cfg, path, source, y, folds, train_ids, test_ids)
    extra = {"model": f"{cfg.method}({cfg.source})", "inputs": [cfg.source], "method": cfg.method, **extra}
    return write_source(comp, name, "adapt", oof, test, y, folds, extra)
