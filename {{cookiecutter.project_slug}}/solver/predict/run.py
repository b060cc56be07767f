"""Prediction from the folds' checkpoints: plain, TTA-N and TTA=auto (views chosen on OOF fold-safely)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from solver.base.atomic import atomic_write, write_csv, write_json
from solver.base.errors import SolverError
from solver.nn.data import build_transform
from solver.nn.runtime import inference_settings, resolve_device
from solver.predict.tta import ViewsDataset, predict_tta
from solver.predict.tta_auto import candidate_views, choose_fold_safe, combine, predict_views, view_gains
from solver.runs.source import read_score
from solver.train.experiment import Experiment, eval_transform, fold_datasets, load_best, load_experiment
from solver.train.fold_folders import finished_folds
from solver.train.predictions import aggregate, predict_fold, prediction_frame


def predict_experiment(
    root: Path, comp_name: str, exp_name: str, overrides=(), run_name: str | None = None, tta: int | str | None = None
) -> dict | None:
    """Recompute every finished fold's OOF and test predictions from its best checkpoint; with tta=N, TTA-N
    predictions go to fold<k>/oof_ttaN.csv and join in <exp>/ttaN/ (a leaderboard row of its own); with
    tta="auto", fixed views chosen on OOF fold-safely (solver/predict/tta_auto.py) make <exp>/tta_auto/ when they beat the plain CV."""
    exp = load_experiment(root, comp_name, exp_name, overrides, run_name=run_name)
    device = resolve_device(exp.cfg.train.device)
    done = finished_folds(exp)
    if tta == "auto":
        return _predict_auto_tta(exp, done, device)
    for k in done:
        if tta:
            _predict_fold_tta(exp, k, tta, device)
        else:
            predict_fold(exp, k, device, exp.fold_dir(k))
        print(f"fold {k}: {f'TTA-{tta} ' if tta else ''}predictions written to {exp.fold_dir(k)}")
    with exp.lock():
        score = aggregate(exp, f"tta{tta}" if tta else "")
    if tta and score is not None:
        _say_if_below_plain(exp, score)
    return score


def _say_if_below_plain(exp: Experiment, score: dict) -> None:
    """TTA that does not help is worth one line: the user may not want the source (TTA=auto decides by itself)."""
    plain_score = read_score(exp.dir)
    if plain_score is None:
        return
    plain, metric = plain_score["cv"], exp.comp.metric
    if (score["cv"] <= plain) if metric.greater_is_better else (score["cv"] >= plain):
        print(
            f"{exp.comp.name}/{score['source']}: CV {metric.name} {score['cv']:.4f} does not beat the plain {plain:.4f}; "
            "these views do not help this model (TTA=auto chooses views on OOF and writes only what helps)"
        )


def _predict_fold_tta(exp: Experiment, k: int, n_views: int, device: torch.device) -> None:
    cfg, spec = exp.cfg, exp.cfg.tta
    model, image_size = load_best(exp, exp.fold_dir(k), device)
    _, valid_ds, test_ds, valid_mask = fold_datasets(exp, k)
    plain = eval_transform(exp)(image_size)
    augmented = build_transform(cfg, exp.mean, exp.std, train=True, image_size=image_size, augment=spec.augment)
    per_batch = max(1, cfg.data.batch_size * 2 // n_views)
    id_col, task = exp.comp.cfg.id_column, exp.comp.cfg.task
    predictions, settings = {}, inference_settings(cfg.train, device)
    for split, dataset in (("oof", valid_ds), ("test", test_ds)):
        # Test rows get seeds offset past the training rows: no two samples share a view stream.
        offset = 0 if split == "oof" else len(exp.train_df)
        views = ViewsDataset(dataset, plain, augmented, n_views, spec.seed + offset, spec.include_plain)
        desc = f"fold {k} {split} TTA-{n_views}"
        predictions[split] = predict_tta(model, views, task, spec.combine, per_batch, device, cfg.data.num_workers, desc, *settings)
    oof = prediction_frame(exp.train_df[id_col][valid_mask], predictions["oof"], exp.comp.classes, id_col, fold=k)
    write_csv(oof, exp.fold_dir(k) / f"oof_tta{n_views}.csv")
    write_csv(prediction_frame(exp.test_df[id_col], predictions["test"], exp.comp.classes, id_col), exp.fold_dir(k) / f"test_tta{n_views}.csv")


def _fold_view_logits(exp: Experiment, k: int, views: list[str], device: torch.device) -> dict[str, np.ndarray]:
    """(V, n, C) logits of fold k's model on its OOF rows and on the test set, cached in fold<k>/tta_views.npz."""
    path = exp.fold_dir(k) / "tta_views.npz"
    if path.is_file():
        with np.load(path) as saved:
            if list(saved["views"]) == views and saved["test"].shape[1] == len(exp.test_df):
                return {"oof": saved["oof"], "test": saved["test"]}
    cfg = exp.cfg
    model, image_size = load_best(exp, exp.fold_dir(k), device)
    _, valid_ds, test_ds, _ = fold_datasets(exp, k)
    valid_ds.transform = test_ds.transform = eval_transform(exp)(image_size)
    (amp, channels_last), batch = inference_settings(cfg.train, device), max(1, cfg.data.batch_size * 2 // len(views))
    arrays = {
        split: predict_views(model, ds, views, batch, device, amp, channels_last, desc=f"fold {k} {split} views")
        for split, ds in (("oof", valid_ds), ("test", test_ds))
    }
    atomic_write(path, lambda tmp: np.savez(open(tmp, "wb"), views=np.array(views), **arrays))
    return arrays


def _predict_auto_tta(exp: Experiment, done: list[int], device: torch.device) -> dict | None:
    comp, task, id_col = exp.comp, exp.comp.cfg.task, exp.comp.cfg.id_column
    if len(done) < exp.n_folds:
        raise SolverError(f"{exp.dir}: TTA=auto chooses views on every fold's OOF; {len(done)}/{exp.n_folds} folds have a checkpoint")
    views = candidate_views(exp.cfg.augment.train)
    oof_logits, test_logits = np.zeros((len(views), len(exp.y), comp.num_classes)), {}
    for k in done:
        arrays = _fold_view_logits(exp, k, views, device)
        oof_logits[:, exp.folds == k], test_logits[k] = arrays["oof"], arrays["test"]
    subsets = choose_fold_safe(oof_logits, exp.y, exp.folds, comp.metric, task)
    oof = np.zeros((len(exp.y), comp.num_classes))
    for k in done:
        oof[exp.folds == k] = combine(oof_logits[:, exp.folds == k], subsets[k], task)
    gains = view_gains(oof_logits, exp.y, comp.metric, task, views)
    print(f"OOF {comp.metric.name} gain per view (alone / averaged with the identity): ")
    print("  " + ", ".join(f"{v} {g['alone']:+.4f} / {g['with_identity']:+.4f}" for v, g in gains.items()))
    print("views per fold (chosen on the other folds): " + "; ".join(f"fold {k}: {'+'.join(views[v] for v in s)}" for k, s in subsets.items()))
    plain, tta = comp.metric(exp.y, combine(oof_logits, [0], task)), comp.metric(exp.y, oof)
    better = tta > plain if comp.metric.greater_is_better else tta < plain
    if not better:
        print(
            f"{comp.name}/{exp.name}/tta_auto not written: its CV {comp.metric.name} {tta:.4f} does not beat the plain {plain:.4f} "
            "(the views chosen on the other folds do not help on each fold's own rows)"
        )
        return None
    for k in done:
        rows = exp.folds == k
        frame = prediction_frame(exp.train_df[id_col][rows], oof[rows], comp.classes, id_col, fold=k)
        write_csv(frame, exp.fold_dir(k) / "oof_tta_auto.csv")
        test = combine(test_logits[k], subsets[k], task)
        write_csv(prediction_frame(exp.test_df[id_col], test, comp.classes, id_col), exp.fold_dir(k) / "test_tta_auto.csv")
    with exp.lock():
        score = aggregate(exp, "tta_auto")
    write_json(
        {"views": views, "per_fold": {str(k): [views[v] for v in s] for k, s in subsets.items()}, "gains": gains}, exp.dir / "tta_auto" / "views.json"
    )
    return score
