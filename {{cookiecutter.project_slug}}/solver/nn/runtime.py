"""Where and how a model runs: device, seeds, autocast and memory format, DataLoaders and their workers."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from solver.base.errors import SolverError
from solver.nn import distributed


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SolverError(f"train.device: '{name}' asked for, but no CUDA device is visible; use train.device=cpu")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of every random stream of one epoch (augmentations, data order, MixUp, dropout)."""
    return seed * 10_007 + epoch


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "auto" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def inference_settings(spec, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, channels_last) as training used them (train.amp, train.channels_last): prediction, TTA and
    embeddings run the model as training validated it, at the same speed; on the CPU amp=auto is off."""
    return amp_dtype(spec.amp, device), spec.channels_last


def default_num_workers(device: torch.device) -> int:
    """data.num_workers=auto: on CUDA, the cores of this process's share of the machine less one for the
    training loop (at most 8); on the CPU none, since the model's own threads already use every core."""
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(8, per_process - 1))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    device: torch.device,
    sampler=None,
    persistent: bool = False,
) -> DataLoader:
    """persistent: keep the worker processes for the next pass (a loader reused across epochs).

    The workers need no seeding: an ImageDataset seeds each sample's augmentations itself (by its seed and index),
    so the batches are the same with any number of workers, under any wrapper (a rank's Subset).
    """
    generator = torch.Generator().manual_seed(seed)
    n = len(sampler) if sampler is not None else len(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        drop_last=shuffle and n > batch_size,  # a batch of 1 breaks BatchNorm
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=generator,
        persistent_workers=persistent and num_workers > 0,
    )


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def shard_loader(dataset: Dataset, batch_size: int, num_workers: int, device: torch.device, persistent: bool = False) -> DataLoader:
    """A loader over this rank's shard of an evaluation set (the whole set in a single process)."""
    part = Subset(dataset, distributed.shard(len(dataset))) if distributed.ranks().enabled else dataset
    return make_loader(part, batch_size, False, num_workers, 0, device, persistent=persistent)
