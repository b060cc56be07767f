"""Test-time augmentation and embeddings.

TTA-N: N random views of each image, drawn from the experiment's training augmentations (or a declared
TTA pipeline), pushed through the model in one batch per group of images and averaged: probabilities
(default), logits, or a geometric mean. The views of sample i are seeded by (seed, i), so OOF and test get
the same treatment and a rerun gives the same numbers.

Embeddings: the pre-logit features (timm's forward_head(pre_logits=True)) of the plain view.
"""

from __future__ import annotations

from contextlib import nullcontext

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from solver.base.errors import SolverError
from solver.nn.data import ImageDataset, seed_transform
from solver.nn.inference import progress_bar, to_probabilities
from solver.nn.runtime import to_device

COMBINE = ("probabilities", "logits", "geometric")


class ViewsDataset(Dataset):
    """Sample i -> a (n_views, C, H, W) tensor: the plain view first (if asked), then random views."""

    def __init__(self, base: ImageDataset, plain: A.Compose, augmented: A.Compose, n_views: int, seed: int, include_plain: bool = True):
        self.base, self.plain, self.augmented = base, plain, augmented
        self.n_views, self.seed, self.include_plain = n_views, seed, include_plain

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image = self.base.image(i)
        views = [self.plain(image=image)["image"]] if self.include_plain else []
        seed_transform(self.augmented, self.seed * 1_000_003 + i)  # this sample's views, the same in every run
        views += [self.augmented(image=image)["image"] for _ in range(self.n_views - len(views))]
        return torch.stack(views), torch.tensor(i)


def combine_views(logits: torch.Tensor, task: str, how: str) -> torch.Tensor:
    """(B, N, C) logits of N views -> (B, C) probabilities."""
    if how == "logits":
        return to_probabilities(logits.mean(1), task)
    probs = to_probabilities(logits.flatten(0, 1), task).view_as(logits)
    if how == "probabilities":
        return probs.mean(1)
    if how == "geometric":
        if task == "multiclass":
            return probs.clamp_min(1e-12).log().mean(1).softmax(1)  # renormalised geometric mean
        # Per label, the geometric means of p and of 1 - p, renormalised: sigmoid of the mean logit. The geometric
        # mean of p alone would pull every label down (views 0.9 and 0.1 would give 0.30).
        return to_probabilities(logits.mean(1), task)
    raise SolverError(f"tta combine '{how}' is unknown; valid: {', '.join(COMBINE)}")


@torch.no_grad()
def predict_tta(
    model,
    views: ViewsDataset,
    task: str,
    how: str,
    images_per_batch: int,
    device: torch.device,
    num_workers: int = 0,
    desc: str = "tta",
    amp: torch.dtype | None = None,
    channels_last: bool = False,
) -> np.ndarray:
    """Probabilities of every sample, averaged over its views; B images x N views go through the model at once.

    amp / channels_last: the autocast dtype and memory format training used (trainer.inference_settings)."""
    if views.n_views < 1:
        raise SolverError(f"tta: n_views must be at least 1, got {views.n_views}")
    model.eval()
    loader = DataLoader(views, batch_size=max(1, images_per_batch), shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda")
    out = []
    for x, _ in progress_bar(loader, desc):
        b, n = x.shape[:2]
        with _autocast(device, amp):
            logits = model(to_device(x.flatten(0, 1), device, channels_last)).float().view(b, n, -1)
        out.append(combine_views(logits, task, how).cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def embed(
    model,
    dataset: ImageDataset,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
    desc: str = "embed",
    amp: torch.dtype | None = None,
    channels_last: bool = False,
) -> np.ndarray:
    """(N, D) pre-logit features: what the classifier sees, for kNN search (amp / channels_last as in predict_tta)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda")
    out = []
    for x, _ in progress_bar(loader, desc):
        with _autocast(device, amp):
            features = model.forward_features(to_device(x, device, channels_last))
            out.append(model.forward_head(features, pre_logits=True).float().cpu())
    return torch.cat(out).numpy()


def _autocast(device: torch.device, amp: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp) if amp else nullcontext()
