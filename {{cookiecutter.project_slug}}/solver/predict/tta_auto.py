"""`make predict TTA=auto`: TTA over fixed views, the subset chosen on out-of-fold predictions, fold-safely.

Candidate views are ones the model saw in training: the identity, a horizontal / vertical flip only when
augment.train flips, shifts by 1/16 of the image and scales of 0.9 and 1.1 (inside what a training Affine or a
crop does). Each view is a tensor operation on the normalised batch (torch.flip, F.grid_sample), so the V views of
an image cost V forward passes and one decode.

For outer fold k the subset is chosen on the OOF rows of the other folds (greedy forward selection from the
identity, a view added while it raises the competition's metric there), then applied to fold k's OOF and to fold
k's test predictions: no fold's labels choose its own views. The TTA source is written only when it beats the
plain predictions on CV.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from solver.nn.inference import to_probabilities

FLIPS = {"hflip": "HorizontalFlip", "vflip": "VerticalFlip"}
SHIFTS = {"shift_left": (-1, 0), "shift_right": (1, 0), "shift_up": (0, -1), "shift_down": (0, 1)}
SCALES = {"scale_0.9": 0.9, "scale_1.1": 1.1}


def candidate_views(augment_train: list[dict]) -> list[str]:
    """identity, the flips augment.train uses (a mirrored 2 is no 2 where training never flipped), shifts, scales."""
    used = {spec.get("name") for spec in augment_train or []}
    return ["identity", *[view for view, name in FLIPS.items() if name in used], *SHIFTS, *SCALES]


def apply_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """One view of a (B, C, H, W) batch; shifts and scales resample with border padding (no black frame)."""
    if view == "identity":
        return x
    if view == "hflip":
        return torch.flip(x, dims=[3])
    if view == "vflip":
        return torch.flip(x, dims=[2])
    theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
    if view in SHIFTS:
        dx, dy = SHIFTS[view]
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        # affine_grid works in [-1, 1]: a shift of 1/16 of the side is 2/16 there; the sign moves the content.
        theta[:, 0, 2], theta[:, 1, 2] = -dx * 2 / 16, -dy * 2 / 16
    elif view in SCALES:
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / SCALES[view]
    else:
        raise ValueError(f"unknown TTA view '{view}'")
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.no_grad()
def predict_views(
    model, dataset, views: list[str], batch_size: int, device: torch.device, amp=None, channels_last: bool = False, desc: str = "views"
):
    """(V, N, C) logits of every view of every sample; one decode per image, all V views in one forward pass."""
    model.eval()
    loader = DataLoader(dataset, batch_size=max(1, batch_size), shuffle=False, pin_memory=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=amp) if amp else torch.autocast(device.type, enabled=False)
    out = []
    for x, _ in tqdm(loader, desc=desc, leave=False, mininterval=1):
        x = x.to(device, non_blocking=True)
        batch = torch.cat([apply_view(x, view) for view in views])
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(batch).float()
        out.append(logits.view(len(views), len(x), -1).cpu())
    return torch.cat(out, dim=1).numpy()


def combine(logits: np.ndarray, subset: list[int], task: str) -> np.ndarray:
    """Mean probability over the views in subset of (V, N, C) logits."""
    chosen = torch.from_numpy(logits[subset]).float()
    return to_probabilities(chosen.flatten(0, 1), task).view_as(chosen).mean(0).numpy()


def greedy_subset(logits: np.ndarray, y: np.ndarray, metric, task: str) -> list[int]:
    """Views (indices into logits' first axis) chosen greedily from the identity (index 0) while the metric improves."""
    sign = 1 if metric.greater_is_better else -1
    subset, best = [0], sign * metric(y, combine(logits, [0], task))
    while True:
        trials = {v: sign * metric(y, combine(logits, [*subset, v], task)) for v in range(len(logits)) if v not in subset}
        if not trials:
            return subset
        view, score = max(trials.items(), key=lambda kv: kv[1])
        if score <= best:
            return subset
        subset, best = [*subset, view], score


def choose_fold_safe(oof_logits: np.ndarray, y: np.ndarray, folds: np.ndarray, metric, task: str) -> dict[int, list[int]]:
    """Per outer fold k, the subset chosen on the other folds' OOF rows only."""
    return {int(k): greedy_subset(oof_logits[:, folds != k], y[folds != k], metric, task) for k in np.unique(folds)}


def view_gains(oof_logits: np.ndarray, y: np.ndarray, metric, task: str, views: list[str]) -> dict[str, dict[str, float]]:
    """Each view's OOF score alone and averaged with the identity, minus the identity's (plain) score."""
    plain = metric(y, combine(oof_logits, [0], task))
    return {
        view: {
            "alone": metric(y, combine(oof_logits, [v], task)) - plain,
            "with_identity": metric(y, combine(oof_logits, [0, v], task)) - plain if v else 0.0,
        }
        for v, view in enumerate(views)
    }
