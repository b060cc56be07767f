"""Per-fold pre-logit embeddings of every train and test row, cached beside the fold's checkpoint."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from solver.base.atomic import atomic_write
from solver.base.errors import SolverError
from solver.nn.data import ImageDataset
from solver.nn.runtime import inference_settings, resolve_device
from solver.predict.tta import embed
from solver.train.experiment import Experiment, eval_transform, load_best
from solver.train.fold_folders import finished_folds


def embeddings(exp: Experiment, device: torch.device | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per fold: pre-logit embeddings of every training row and every test row by that fold's model.

    Cached in fold<k>/embeddings.npz (invalidated with the fold, which a retrain replaces).
    """
    device = device or resolve_device(exp.cfg.train.device)
    train_embeddings, test_embeddings = [], []
    for k in finished_folds(exp):
        path = exp.fold_dir(k) / "embeddings.npz"
        ids_key = hashlib.sha256("\n".join([*exp.train_df[exp.comp.cfg.id_column], "|", *exp.test_df[exp.comp.cfg.id_column]]).encode()).hexdigest()[
            :16
        ]
        if path.is_file():
            with np.load(path) as saved:
                made_for = str(saved["ids_key"]) if "ids_key" in saved.files else ""
            if made_for != ids_key:  # made for another train/test set: recompute
                path.unlink()
        if not path.is_file():
            model, image_size = load_best(exp, exp.fold_dir(k), device)
            transform = eval_transform(exp)(image_size)
            every_train_row = ImageDataset(exp.train_paths, None, transform, exp.train_images, exp.in_chans)
            test_ds = ImageDataset(exp.test_paths, None, transform, exp.test_images, exp.in_chans)
            batch, workers, settings = exp.cfg.data.batch_size * 2, exp.cfg.data.num_workers, inference_settings(exp.cfg.train, device)
            arrays = {
                "ids_key": np.array(ids_key),
                "train": embed(model, every_train_row, batch, device, workers, f"fold {k} embed train", *settings),
                "test": embed(model, test_ds, batch, device, workers, f"fold {k} embed test", *settings),
            }
            atomic_write(path, lambda tmp, arrays=arrays: np.savez(open(tmp, "wb"), **arrays))
        with np.load(path) as saved:
            train_embeddings.append(saved["train"])
            test_embeddings.append(saved["test"])
    if len(train_embeddings) < exp.n_folds:
        raise SolverError(f"{exp.dir}: {len(train_embeddings)}/{exp.n_folds} folds have a checkpoint; kNN features need every fold")
    return train_embeddings, test_embeddings
