"""The training loop of one fold, readable in one sitting.

fit() trains with early stopping on the competition metric, writes best.pt / last.pt (atomically),
metrics.csv and TensorBoard logs into the fold's folder, and returns the best score.
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from solver.atomic import save_torch, write_csv
from solver.config import ExperimentConfig
from solver.errors import SolverError
from solver.metrics import Metric
from solver.optim import create_optimizer, create_scheduler, step_scheduler


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SolverError(f"train.device: '{name}' asked for, but no CUDA device is visible; use train.device=cpu")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _seed_worker_augmentations(_worker_id: int) -> None:
    # Each worker holds a copy of the albumentations Compose with the same internal RNG; give each its own
    # stream, derived from torch's per-worker seed (itself derived from the loader's seeded generator).
    dataset = get_worker_info().dataset
    dataset.transform.set_random_seed(torch.initial_seed() % 2**32)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int, device: torch.device) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(dataset) > batch_size,  # a batch of 1 breaks BatchNorm
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=device.type == "cuda",
        worker_init_fn=_seed_worker_augmentations if num_workers > 0 else None,
        generator=generator,
    )


def loss_function(task: str) -> torch.nn.Module:
    return torch.nn.CrossEntropyLoss() if task == "multiclass" else torch.nn.BCEWithLogitsLoss()


def to_probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    return logits.softmax(1) if task == "multiclass" else logits.sigmoid()


def train_one_epoch(model, loader, loss_fn, optimizer, device, desc: str) -> float:
    model.train()
    total, count = 0.0, 0
    progress = tqdm(loader, desc=desc, leave=False, mininterval=1)
    for x, y in progress:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            raise SolverError(f"{desc}: the training loss became {loss.item()}; lower train.lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
        count += len(x)
        progress.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    return total / max(count, 1)


@torch.no_grad()
def predict(model, loader, device, task: str, loss_fn=None, desc: str = "predict") -> tuple[np.ndarray, float]:
    """Probabilities for every sample of the loader (in order), and the mean loss when targets are known."""
    model.eval()
    probs, total, count = [], 0.0, 0
    for x, y in tqdm(loader, desc=desc, leave=False, mininterval=1):
        logits = model(x.to(device, non_blocking=True)).float()
        probs.append(to_probabilities(logits, task).cpu())
        if loss_fn is not None:
            total += loss_fn(logits, y.to(device)).item() * len(x)
            count += len(x)
    return torch.cat(probs).numpy(), (total / count if count else math.nan)


def fit(
    model: torch.nn.Module,
    train_loader: DataLoader,
    valid_loader: DataLoader,
    y_valid: np.ndarray,
    cfg: ExperimentConfig,
    metric: Metric,
    task: str,
    out_dir: Path,
    device: torch.device,
    checkpoint_meta: dict,
    desc: str,
) -> dict:
    """Train until the epochs run out or the metric stops improving; return the best epoch's numbers."""
    spec = cfg.train
    model.to(device)
    loss_fn = loss_function(task)
    optimizer = create_optimizer(model, spec)
    scheduler = create_scheduler(optimizer, spec, metric.greater_is_better)
    writer = SummaryWriter(log_dir=str(out_dir / "tb"))
    history, best, best_epoch, stale = [], None, 0, 0
    try:
        for epoch in range(1, spec.epochs + 1):
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss = train_one_epoch(model, train_loader, loss_fn, optimizer, device, f"{desc} epoch {epoch}/{spec.epochs}")
            probs, valid_loss = predict(model, valid_loader, device, task, loss_fn, desc=f"{desc} valid")
            score = metric(y_valid, probs)
            improved = metric.better(score, best)
            if improved:
                best, best_epoch, stale = score, epoch, 0
                save_torch({"model": model.state_dict(), "epoch": epoch, "score": score, "meta": checkpoint_meta}, out_dir / "best.pt")
            else:
                stale += 1
            save_torch({"model": model.state_dict(), "epoch": epoch, "score": score, "meta": checkpoint_meta}, out_dir / "last.pt")
            row = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "valid_loss": valid_loss,
                metric.name: score,
                "best": best,
                "seconds": time.perf_counter() - start,
            }
            history.append(row)
            write_csv(pd.DataFrame(history), out_dir / "metrics.csv")
            for key in ("lr", "train_loss", "valid_loss"):
                writer.add_scalar(key, row[key], epoch)
            writer.add_scalar(f"valid_{metric.name}", score, epoch)
            mark = "  *" if improved else ""
            tqdm.write(
                f"{desc} epoch {epoch:3d}  lr {lr:.2e}  train_loss {train_loss:.4f}  valid_loss {valid_loss:.4f}  {metric.name} {score:.4f}{mark}"
            )
            step_scheduler(scheduler, score)
            if spec.early_stopping_patience and stale >= spec.early_stopping_patience:
                tqdm.write(f"{desc}: early stop, {metric.name} did not improve for {stale} epochs (best {best:.4f} at epoch {best_epoch})")
                break
    finally:
        writer.close()
    return {"score": best, "epoch": best_epoch, "epochs_run": len(history)}
