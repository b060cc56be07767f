"""Last-layer tuning: retrain only the classifier head on the stored embeddings, towards the test distribution.

The features stay frozen (each fold model's pre-logit embeddings, cached by solver.train.experiment.embeddings), so a
head trains in seconds. The target set it is tuned on is either

- pseudo-labels: test rows that fold k's own model predicts with at least `confidence`, labelled with that
  prediction (fold k's model never saw fold k's labels, so its pseudo-labels carry none of them), or
- a labelled subset that resembles the test set better: training rows (their own labels) and/or test rows with
  labels given by the user.

Fold safety: the head of fold k trains on training rows outside fold k only, so the OOF prediction of a row comes
from a head that never saw that row's label. Its test prediction is the mean over the folds' heads.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from solver.base.errors import SolverError
from solver.config.adapt import HeadSpec


@dataclass
class FoldTarget:
    """Fold k's target set: test rows (index into the test embeddings) with labels, training rows (index) with labels."""

    test_rows: np.ndarray
    test_labels: np.ndarray
    train_rows: np.ndarray


def pseudo_labels(probs: np.ndarray, task: str, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows predicted with at least `confidence` and their hard labels (multilabel: every label that confident)."""
    probs = np.asarray(probs, dtype=float)
    if task == "multiclass":
        rows = np.flatnonzero(probs.max(axis=1) >= confidence)
        return rows, probs[rows].argmax(axis=1)
    rows = np.flatnonzero(np.maximum(probs, 1 - probs).min(axis=1) >= confidence)
    return rows, (probs[rows] > 0.5).astype(np.float32)


def _loss(task: str) -> nn.Module:
    return nn.CrossEntropyLoss(reduction="none") if task == "multiclass" else nn.BCEWithLogitsLoss(reduction="none")


@contextmanager
def _one_thread():
    """A linear head on a few thousand rows is microseconds of work per step: more threads only add synchronisation
    (measured 10x slower with 2 threads than with 1 on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_head(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, task: str, num_classes: int, settings: HeadSpec, init: nn.Linear | None = None
) -> nn.Linear:
    """A linear head on embeddings x, from init's weights (or freshly initialised), with per-row loss weights."""
    if len(x) == 0:
        raise SolverError("head tuning: the target set is empty; lower the confidence or give more labelled rows")
    torch.manual_seed(settings.seed)
    head = nn.Linear(x.shape[1], num_classes)
    if init is not None:
        if init.in_features != x.shape[1] or init.out_features != num_classes:
            raise SolverError(
                f"head tuning: the classifier maps {init.in_features} -> {init.out_features}, the embeddings have {x.shape[1]} dimensions"
            )
        head.load_state_dict(init.state_dict())
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long if task == "multiclass" else torch.float32)
    wt = torch.as_tensor(weights, dtype=torch.float32)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    loss_fn = _loss(task)
    generator = torch.Generator().manual_seed(settings.seed)
    head.train()
    with _one_thread():
        for _ in range(settings.epochs):
            for batch in torch.randperm(len(xt), generator=generator).split(settings.batch_size):
                loss = loss_fn(head(xt[batch]), yt[batch])
                if loss.ndim == 2:  # multilabel: mean over labels per row
                    loss = loss.mean(dim=1)
                loss = (loss * wt[batch]).sum() / wt[batch].sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return head.eval()


@torch.no_grad()
def predict_head(head: nn.Linear, x: np.ndarray, task: str) -> np.ndarray:
    logits = head(torch.as_tensor(x, dtype=torch.float32))
    return (logits.softmax(dim=1) if task == "multiclass" else logits.sigmoid()).numpy()


def fold_safe_head_tuning(
    train_emb: list[np.ndarray],
    test_emb: list[np.ndarray],
    y: np.ndarray,
    folds: np.ndarray,
    targets: list[FoldTarget],
    task: str,
    num_classes: int,
    settings: HeadSpec,
    init_heads: list[nn.Linear | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """OOF (N, C) and test (N_test, C) probabilities of heads retrained per fold, and per-fold counts for the record."""
    y, folds = np.asarray(y), np.asarray(folds)
    n_folds = len(train_emb)
    oof = np.zeros((len(y), num_classes))
    test = np.zeros((len(test_emb[0]), num_classes))
    info = []
    for k in tqdm(range(n_folds), desc="head tuning", leave=False):
        target, outside = targets[k], folds != k
        if (folds[target.train_rows] == k).any():
            raise SolverError(f"head tuning: fold {k}'s target set holds rows of fold {k}; their labels would leak into its OOF")
        train_rows = np.flatnonzero(outside) if settings.include_train else target.train_rows
        train_weights = np.where(np.isin(train_rows, target.train_rows), settings.target_weight, 1.0)
        x = np.concatenate([train_emb[k][train_rows], test_emb[k][target.test_rows]])
        labels = np.concatenate([y[train_rows], target.test_labels.astype(y.dtype)])
        weights = np.concatenate([train_weights, np.full(len(target.test_rows), settings.target_weight)])
        init = init_heads[k] if init_heads else None
        head = train_head(x, labels, weights, task, num_classes, settings.model_copy(update={"seed": settings.seed + k}), init)
        oof[~outside] = predict_head(head, train_emb[k][~outside], task)
        test += predict_head(head, test_emb[k], task) / n_folds
        info.append(
            {
                "fold": k,
                "train_rows": int(len(train_rows)),
                "target_train_rows": int(len(target.train_rows)),
                "target_test_rows": int(len(target.test_rows)),
            }
        )
    return oof, test, info
