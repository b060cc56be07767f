"""The training loop of one fold, readable in one sitting.

fit() walks the curriculum epoch by epoch (image size, augmentation probability, MixUp, LR schedule),
evaluates the model (and its EMA) on the fold's validation part, keeps best.pt by the competition metric (train.select: last keeps the last epoch)
and last.pt with everything needed to resume, and logs metrics.csv, TensorBoard and a PNG of the curves.

Resume is exact: every random stream (weights init aside) is re-derived from (seed, epoch) at the start of
each epoch, and last.pt holds model, optimizer, schedule, EMA, AMP scaler and loop state at the end of an
epoch; a run killed mid-epoch repeats that epoch and ends with the same weights as an unkilled run.

Under torchrun (solver/nn/distributed.py) each rank trains on its DistributedSampler share with the model in
DistributedDataParallel (data.batch_size is per process), evaluates its shard of the validation rows, and the
ranks gather the predictions in order, so every rank computes the same score and takes the same decisions;
only rank 0 writes checkpoints, metrics.csv, TensorBoard and plots.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from timm.data import Mixup
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from solver.base.atomic import save_torch, write_csv
from solver.base.errors import SolverError
from solver.competition.metrics import Metric
from solver.config.experiment import ExperimentConfig
from solver.nn import distributed
from solver.nn.curriculum import EpochPlan, make_schedule, plan_stages, steps_per_epoch
from solver.nn.inference import predict_all, progress_bar
from solver.nn.optim import create_optimizer
from solver.nn.runtime import amp_dtype, epoch_seed, make_loader, seed_everything, shard_loader, to_device
from solver.runs.plots import plot_learning_curves
from solver.runs.source import BEST_CHECKPOINT, LAST_CHECKPOINT

# Batches between two reads of the training loss (NaN check, progress bar): each read waits for the device.
LOSS_CHECK_EVERY = 25


def loss_function(task: str) -> torch.nn.Module:
    # Both take soft targets too (MixUp): class probabilities for CE, label probabilities for BCE.
    return torch.nn.CrossEntropyLoss() if task == "multiclass" else torch.nn.BCEWithLogitsLoss()


def make_mixup(mixup_alpha: float, cutmix_alpha: float, num_classes: int, task: str) -> Mixup | None:
    """timm's Mixup: x' = l*x_i + (1-l)*x_j and y' = l*y_i + (1-l)*y_j with j the batch reversed, l ~ Beta(alpha, alpha);
    soft class targets for multiclass, mixed 0/1 vectors for multilabel; CutMix pastes a box instead."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return None
    return Mixup(
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        label_smoothing=0.0,
        num_classes=num_classes,
        multi_label=task == "multilabel",
    )


class Trainer:
    """State of one fold's training: what last.pt saves and resume restores."""

    def __init__(self, model, cfg: ExperimentConfig, metric: Metric, task: str, num_classes: int, device: torch.device, n_train: int):
        spec = cfg.train
        self.cfg, self.metric, self.task, self.device = cfg, metric, task, device
        ranks = distributed.ranks()
        if spec.sync_bn and ranks.enabled:
            if device.type != "cuda":
                raise SolverError("train.sync_bn=true: SyncBatchNorm runs on CUDA devices only; set train.sync_bn=false for CPU processes")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(device)
        if spec.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # DDP averages the gradients over the ranks in backward(); evaluation runs on the bare model (each rank its shard).
        self.ddp = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None) if ranks.enabled else None
        net = self.ddp or self.model
        self.forward = torch.compile(net) if spec.compile else net
        self.eval_forward = self.forward if self.ddp is None else torch.compile(self.model) if spec.compile else self.model
        self.optimizer = create_optimizer(self.model, spec)
        self.amp = amp_dtype(spec.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        # use_warmup: the EMA's decay grows from 0 towards ema_decay, so early random weights fade out fast.
        self.ema = ModelEmaV3(self.model, decay=spec.ema_decay, use_warmup=True) if spec.ema_decay else None
        self.loss_fn = loss_function(task)
        self.num_classes = num_classes
        self.epochs, self.segments = plan_stages(cfg)
        self.n_steps = steps_per_epoch(n_train, cfg.data.batch_size, spec.accumulation_steps)
        self.schedule = None
        self.history: list[dict] = []
        self.best: float | None = None
        self.best_epoch = 0
        self.stale = 0
        self.next_epoch = 1  # the first epoch not yet finished
        self.skip_to_stage = -1  # early stopping ends the current stage
        self.optimizer_steps = 0

    # --- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule else None,
            "ema": self.ema.module.state_dict() if self.ema else None,
            "scaler": self.scaler.state_dict(),
            "loop": {
                "history": self.history,
                "best": self.best,
                "best_epoch": self.best_epoch,
                "stale": self.stale,
                "next_epoch": self.next_epoch,
                "skip_to_stage": self.skip_to_stage,
                "optimizer_steps": self.optimizer_steps,
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema and state["ema"] is not None:
            self.ema.module.load_state_dict(state["ema"])
        if self.scaler.is_enabled() and state["scaler"]:  # a fold may resume under another AMP mode (train.device is runtime)
            self.scaler.load_state_dict(state["scaler"])
        for key, value in state["loop"].items():
            setattr(self, key, value)
        ep = self.epochs[self.next_epoch - 1] if self.next_epoch <= len(self.epochs) else None
        if ep is not None and state["schedule"] is not None and ep.epoch != self.segments[ep.segment].first_epoch:
            self.schedule = make_schedule(self.optimizer, self.segments[ep.segment], self.n_steps, self.metric.greater_is_better)
            self.optimizer.load_state_dict(state["optimizer"])  # the schedule's constructor reset the lr
            self.schedule.load_state_dict(state["schedule"])

    # --- one epoch -------------------------------------------------------------------------------------------
    def train_epoch(self, loader: DataLoader, ep: EpochPlan, desc: str) -> float:
        spec = self.cfg.train
        self.model.train()
        mixup = make_mixup(ep.mixup_alpha, ep.cutmix_alpha, self.num_classes, self.task)
        autocast = torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext()
        # The loss is summed on the device and read back (a host sync) every LOSS_CHECK_EVERY batches and at the end of
        # the epoch, not at every step: the NaN check and the progress bar's loss both use that read.
        running, total, count = torch.zeros((), device=self.device), 0.0, 0
        accumulate = spec.accumulation_steps
        batches = len(loader)
        progress = progress_bar(loader, desc)
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(progress):
            x, y = to_device(x, self.device, spec.channels_last), y.to(self.device, non_blocking=True)
            if mixup is not None and len(x) > 1:
                if len(x) % 2:
                    # A fold smaller than a batch is one batch, of any size (make_loader keeps it); MixUp pairs each row
                    # with the batch reversed and timm asserts an even batch: the odd row out sits this batch out.
                    x, y = x[:-1], y[:-1]
                x, y = mixup(x, y)
            steps = (i + 1) % accumulate == 0 or i + 1 == batches
            # The last group of an epoch may hold fewer batches: its gradient is the mean over the batches it has.
            group = min(accumulate, batches - i // accumulate * accumulate)
            # Between optimizer steps DDP need not average gradients: they only accumulate locally.
            sync = self.ddp.no_sync() if self.ddp is not None and not steps else nullcontext()
            with sync:
                with autocast:
                    loss = self.loss_fn(self.forward(x).float(), y)
                self.scaler.scale(loss / group).backward()
            if steps:
                if spec.clip_grad_norm:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), spec.clip_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.optimizer_steps += 1
                if self.ema is not None:
                    self.ema.update(self.model, step=self.optimizer_steps)
                self.schedule.after_batch()
            running += loss.detach() * len(x)
            count += len(x)
            if (i + 1) % LOSS_CHECK_EVERY == 0 or i + 1 == batches:
                total = running.item()
                if not math.isfinite(total):
                    raise SolverError(f"{desc}: the training loss became {total}; lower train.lr, set train.clip_grad_norm, or check the data")
                progress.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        total, count = distributed.sum_across_ranks([total, count])  # the loss over every rank's samples
        return total / max(count, 1)

    def evaluate(self, loader: DataLoader, y_valid: np.ndarray, model=None) -> tuple[float, float]:
        """loader: a shard_loader() of the validation set; the score is over all its rows, the same on every rank."""
        distributed.sync_buffers(self.model if model is None else model)
        model = self.eval_forward if model is None else model
        spec = self.cfg.train
        probs, loss = predict_all(model, loader, len(y_valid), self.device, self.task, self.loss_fn, "valid", self.amp, spec.channels_last)
        return self.metric(y_valid, probs), loss


# Called after every epoch of every fold with (fold, the epoch's metrics.csv row), on every rank: make tune's pruner
# and MLflow's metrics (solver/train/tune.py, solver/train/tracking.py). An exception raised there ends the fold's training.
_epoch_callbacks: list[Callable[[int | None, dict], None]] = []


@contextmanager
def epoch_callback(callback: Callable[[int | None, dict], None]) -> Iterator[None]:
    """Call callback(fold, row) after each epoch that fit() trains inside this block."""
    _epoch_callbacks.append(callback)
    try:
        yield
    finally:
        _epoch_callbacks.remove(callback)


def fit(
    trainer: Trainer,
    train_ds,
    valid_ds,
    y_valid: np.ndarray,
    make_train_transform: Callable,
    make_eval_transform: Callable,
    out_dir: Path,
    checkpoint_meta: dict,
    seed: int,
    desc: str,
) -> dict:
    """Train until the curriculum ends (early stopping ends a stage); return the best epoch's numbers."""
    cfg, metric, device = trainer.cfg, trainer.metric, trainer.device
    spec = cfg.train
    ranks = distributed.ranks()
    main = ranks.is_main
    if (out_dir / LAST_CHECKPOINT).is_file():
        trainer.load_state_dict(torch.load(out_dir / LAST_CHECKPOINT, map_location="cpu", weights_only=True))
        if main:
            tqdm.write(f"{desc}: resuming at epoch {trainer.next_epoch} from {out_dir / LAST_CHECKPOINT}")
    writer = SummaryWriter(log_dir=str(out_dir / "tb"), purge_step=trainer.next_epoch) if main else None
    started = time.perf_counter()
    valid_loaders: dict[int, DataLoader] = {}  # per image size, kept (with persistent workers) across epochs
    try:
        for ep in trainer.epochs[trainer.next_epoch - 1 :]:
            if ep.stage <= trainer.skip_to_stage:
                trainer.next_epoch = ep.epoch + 1
                continue
            first_of_stage = ep.epoch == 1 or trainer.epochs[ep.epoch - 2].stage != ep.stage
            if first_of_stage:
                trainer.stale = 0
            if ep.epoch == trainer.segments[ep.segment].first_epoch or trainer.schedule is None:
                trainer.schedule = make_schedule(trainer.optimizer, trainer.segments[ep.segment], trainer.n_steps, metric.greater_is_better)
            start = time.perf_counter()
            # Rank 0 keeps the single-process streams; the training loader is rebuilt each epoch so that the
            # epoch's augmentation plan and seed reach its workers (what makes resume exact).
            seed_everything(distributed.rank_seed(epoch_seed(seed, ep.epoch)), spec.deterministic)
            train_ds.transform = make_train_transform(ep.image_size, ep.aug_p, distributed.rank_seed(epoch_seed(seed, ep.epoch)))
            train_ds.seed = epoch_seed(seed, ep.epoch)  # sample i's augmentations: from (epoch, i), on any rank and worker
            sampler = None
            if ranks.enabled:
                sampler = DistributedSampler(train_ds, ranks.world_size, ranks.rank, shuffle=True, seed=epoch_seed(seed, ep.epoch))
                sampler.set_epoch(ep.epoch)
            workers = cfg.data.num_workers
            train_loader = make_loader(
                train_ds, cfg.data.batch_size, True, workers, distributed.rank_seed(epoch_seed(seed, ep.epoch)), device, sampler=sampler
            )
            if ep.image_size not in valid_loaders:
                valid_ds.transform = make_eval_transform(ep.image_size)
                valid_loaders = {ep.image_size: shard_loader(valid_ds, cfg.data.batch_size * 2, workers, device, persistent=True)}
            valid_loader = valid_loaders[ep.image_size]
            lr = trainer.optimizer.param_groups[0]["lr"]
            train_loss = trainer.train_epoch(train_loader, ep, f"{desc} epoch {ep.epoch}/{len(trainer.epochs)}")
            score, valid_loss = trainer.evaluate(valid_loader, y_valid)
            ema_score = trainer.evaluate(valid_loader, y_valid, trainer.ema.module)[0] if trainer.ema else math.nan
            trainer.schedule.after_epoch(score, valid_loss)
            # select: last decides nothing on the validation fold: EMA when configured, and every epoch replaces best.pt.
            select_last = spec.select == "last"
            use_ema = trainer.ema is not None and (select_last or metric.better(ema_score, score))
            epoch_best = ema_score if use_ema else score
            improved = select_last or metric.better(epoch_best, trainer.best)
            meta = {**checkpoint_meta, "image_size": ep.image_size, "weights": "ema" if use_ema else "model"}
            if improved:
                trainer.best, trainer.best_epoch, trainer.stale = epoch_best, ep.epoch, 0
                if main:
                    weights = (trainer.ema.module if use_ema else trainer.model).state_dict()
                    save_torch({"model": weights, "epoch": ep.epoch, "score": epoch_best, "meta": meta}, out_dir / BEST_CHECKPOINT)
            else:
                trainer.stale += 1
            row = {
                "epoch": ep.epoch,
                "stage": ep.stage,
                "image_size": ep.image_size,
                "aug_p": ep.aug_p,
                "mixup_alpha": ep.mixup_alpha,
                "lr": lr,
                "train_loss": train_loss,
                "valid_loss": valid_loss,
                metric.name: score,
                f"ema_{metric.name}": ema_score,
                "best": trainer.best,
                "seconds": time.perf_counter() - start,
            }
            trainer.history.append(row)
            trainer.next_epoch = ep.epoch + 1
            stage_ends = ep.epoch == len(trainer.epochs) or trainer.epochs[ep.epoch].stage != ep.stage
            spent = time.perf_counter() - started
            # rank 0's clock decides for every rank
            out_of_time = distributed.from_main(bool(spec.time_budget_minutes) and spent > 60 * (spec.time_budget_minutes or 0))
            if out_of_time:
                trainer.skip_to_stage = trainer.epochs[-1].stage  # every remaining stage is skipped: the run ends
                if main:
                    tqdm.write(f"{desc}: time budget of {spec.time_budget_minutes} minutes spent after epoch {ep.epoch}")
            elif not select_last and spec.early_stopping_patience and trainer.stale >= spec.early_stopping_patience and not stage_ends:
                trainer.skip_to_stage = ep.stage
                if main:
                    tqdm.write(f"{desc}: early stop of stage {ep.stage}, {metric.name} did not improve for {trainer.stale} epochs")
            if main:  # rank 0 writes the files; the other ranks hold the same state
                save_torch({**trainer.state_dict(), "meta": meta, "epoch": ep.epoch, "score": score}, out_dir / LAST_CHECKPOINT)
                write_csv(pd.DataFrame(trainer.history), out_dir / "metrics.csv")
                for key in ("lr", "train_loss", "valid_loss"):
                    writer.add_scalar(key, row[key], ep.epoch)
                writer.add_scalar(f"valid_{metric.name}", score, ep.epoch)
                mark = "  *" if improved else ""
                ema_text = f"  ema {ema_score:.4f}" if trainer.ema else ""
                tqdm.write(
                    f"{desc} epoch {ep.epoch:3d}  size {ep.image_size}  aug_p {ep.aug_p:.2f}  lr {lr:.2e}  train_loss {train_loss:.4f}  "
                    f"valid_loss {valid_loss:.4f}  {metric.name} {score:.4f}{ema_text}{mark}"
                )
            # after the epoch's files: a callback that stops the run (make tune's pruner) leaves them complete
            for callback in list(_epoch_callbacks):
                callback(checkpoint_meta.get("fold"), row)
    finally:
        if writer is not None:
            writer.close()
    distributed.barrier()  # the other ranks read best.pt next
    if trainer.history and main:
        plot_learning_curves(pd.DataFrame(trainer.history), metric.name, out_dir / "learning_curves.png", desc)
    return {"score": trainer.best, "epoch": trainer.best_epoch, "epochs_run": len(trainer.history)}
