"""A fold's OOF and test predictions from its best checkpoint, and the join of every fold into the experiment's source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from solver.base.atomic import write_csv
from solver.base.errors import SolverError
from solver.competition.contract import read_csv
from solver.nn import distributed
from solver.nn.inference import predict_all
from solver.nn.runtime import inference_settings, shard_loader
from solver.runs.compatibility import config_difference, read_fold_config
from solver.runs.plots import write_run_plots
from solver.runs.source import OOF_FILE, TEST_FILE, new_score, say_score, write_source_files
from solver.train.experiment import Experiment, eval_transform, fold_datasets, load_best


def prediction_frame(ids, probs: np.ndarray, classes: list[str], id_col: str, fold: int | None = None) -> pd.DataFrame:
    df = pd.DataFrame(probs, columns=classes)
    if fold is not None:
        df.insert(0, "fold", fold)
    df.insert(0, id_col, list(ids))
    return df


def predict_fold(exp: Experiment, k: int, device: torch.device, out_dir: Path) -> None:
    """Write the fold's OOF and test probabilities from its best checkpoint (in out_dir: the fold or its .partial)."""
    cfg = exp.cfg
    _, valid_ds, test_ds, valid_mask = fold_datasets(exp, k)
    model, image_size = load_best(exp, out_dir, device)
    valid_ds.transform = test_ds.transform = eval_transform(exp)(image_size)
    id_col, task = exp.comp.cfg.id_column, exp.comp.cfg.task
    # Under torchrun each rank predicts its shard and the rows come back in dataset order.
    batch, workers = cfg.data.batch_size * 2, cfg.data.num_workers
    settings = inference_settings(cfg.train, device)  # autocast dtype and channels_last as in training
    oof, _ = predict_all(model, shard_loader(valid_ds, batch, workers, device), len(valid_ds), device, task, None, f"fold {k} oof", *settings)
    test, _ = predict_all(model, shard_loader(test_ds, batch, workers, device), len(test_ds), device, task, None, f"fold {k} test", *settings)
    if not distributed.is_main():
        return
    write_csv(prediction_frame(exp.train_df[id_col][valid_mask], oof, exp.comp.classes, id_col, fold=k), out_dir / OOF_FILE)
    write_csv(prediction_frame(exp.test_df[id_col], test, exp.comp.classes, id_col), out_dir / TEST_FILE)


def aggregate(exp: Experiment, variant: str = "") -> dict | None:
    """Join the folds' OOF, average their test predictions, score; only once every fold is finished.

    variant "" joins fold<k>/oof.csv into <exp>/; variant "tta8" joins fold<k>/oof_tta8.csv into <exp>/tta8/.
    """
    comp, id_col = exp.comp, exp.comp.cfg.id_column
    suffix = f"_{variant}" if variant else ""
    out_dir = exp.dir / variant if variant else exp.dir
    done = [k for k in range(exp.n_folds) if (exp.fold_dir(k) / f"oof{suffix}.csv").is_file()]
    if len(done) < exp.n_folds:
        print(f"{exp.dir}: {len(done)}/{exp.n_folds} folds finished; OOF, test predictions and CV are written when all are")
        return None
    check_same_config(exp)
    train_ids, test_ids = exp.train_df[id_col], exp.test_df[id_col]
    oof = pd.concat([read_csv(exp.fold_dir(k) / f"oof{suffix}.csv", "fold predictions") for k in done])
    if set(oof[id_col]) != set(train_ids) or len(oof) != len(train_ids):
        raise SolverError(f"{exp.dir}: the folds' oof.csv files do not cover train.csv exactly once; retrain (the folds file changed?)")
    oof = oof.set_index(id_col).loc[train_ids].reset_index()
    if (oof["fold"].astype(int).to_numpy() != exp.folds).any():
        raise SolverError(f"{exp.dir}: OOF rows were predicted by other folds than {comp.folds_path} assigns; retrain")
    probs = oof[comp.classes].to_numpy(dtype=float)
    fold_scores = [comp.metric(exp.y[exp.folds == k], probs[exp.folds == k]) for k in done]
    tests = []
    for k in done:
        test = read_csv(exp.fold_dir(k) / f"test{suffix}.csv", "fold predictions")
        if set(test[id_col]) != set(test_ids):
            raise SolverError(f"{exp.fold_dir(k) / TEST_FILE} has other ids than test.csv; run `make predict` to predict the current test set")
        tests.append(test.set_index(id_col).loc[test_ids, comp.classes].to_numpy(dtype=float))  # align by id, not row
    test_probs = np.mean(tests, axis=0)
    test = prediction_frame(exp.test_df[id_col], test_probs, comp.classes, id_col)
    source, kind = (f"{exp.name}/{variant}", "tta") if variant else (exp.name, exp.kind)
    score = new_score(comp, source, kind, exp.cfg.model.name, comp.metric(exp.y, probs), fold_scores, exp.test_df, test_probs)
    write_source_files(out_dir, oof, test, exp.resolved_config(), score)
    curves = [] if variant else [exp.fold_dir(k) for k in done]  # a TTA variant has the same training curves
    threshold = comp.cfg.submission.threshold
    write_run_plots(out_dir, comp.cfg.task, exp.y, probs, comp.classes, threshold, f"{comp.name}/{score['source']}", curves, comp.metric.name)
    say_score(comp, score, folds=True)
    return score


def check_same_config(exp: Experiment) -> None:
    """OOF of folds trained with different settings is no CV score: refuse to join them."""
    first = read_fold_config(exp.fold_dir(0))
    for k in range(1, exp.n_folds):
        difference = config_difference(first, read_fold_config(exp.fold_dir(k)), "fold0", f"fold{k}")
        if difference:
            raise SolverError(f"{exp.dir}: fold{k} was trained with another config than fold0: {difference}; retrain the folds with one config")
