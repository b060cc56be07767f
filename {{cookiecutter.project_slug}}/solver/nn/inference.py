"""Forward passes without gradients: probabilities of a loader's batches, gathered across ranks."""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from solver.nn import distributed
from solver.nn.runtime import to_device


def to_probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    return logits.softmax(1) if task == "multiclass" else logits.sigmoid()


def progress_bar(loader: DataLoader, desc: str) -> tqdm:
    """A progress bar over one pass of the loader (rank 0 shows it).

    tqdm.auto's bar calls iter() on what it is given as it is made: given the DataLoader, that starts a pass of its
    own that is thrown away (its workers started, prefetching, the loader's generator drawn), and the batches then
    depend on the worker count. Given the pass itself, it starts none.
    """
    return tqdm(iter(loader), total=len(loader), desc=desc, leave=False, mininterval=1, disable=not distributed.is_main())


@torch.no_grad()
def predict(model, loader, device, task: str, loss_fn=None, desc: str = "predict", amp: torch.dtype | None = None, channels_last: bool = False):
    """Probabilities for every sample of the loader (in order), and the mean loss when targets are known."""
    model.eval()
    probs, total, count = [], 0.0, 0
    autocast = torch.autocast(device.type, dtype=amp) if amp else nullcontext()
    for x, y in progress_bar(loader, desc):
        with autocast:
            logits = model(to_device(x, device, channels_last)).float()
        probs.append(to_probabilities(logits, task).cpu())
        if loss_fn is not None:
            total += loss_fn(logits, y.to(device)).item() * len(x)
            count += len(x)
    return torch.cat(probs).numpy(), (total / count if count else math.nan)


def predict_all(model, loader: DataLoader, n: int, device, task: str, loss_fn=None, desc: str = "predict", amp=None, channels_last=False):
    """predict() over a shard_loader(), gathered from every rank: probabilities of all n rows in order, mean loss."""
    if not distributed.ranks().enabled:
        return predict(model, loader, device, task, loss_fn, desc, amp, channels_last)
    indices = list(loader.dataset.indices)
    # A set smaller than the number of ranks (a code competition's visible test) leaves some ranks nothing.
    probs, loss = predict(model, loader, device, task, loss_fn, desc, amp, channels_last) if indices else (None, math.nan)
    total, count = distributed.sum_across_ranks([0.0 if math.isnan(loss) else loss * len(indices), len(indices) if loss_fn else 0])
    return distributed.gather_in_order(indices, probs, n), (total / count if count else math.nan)
