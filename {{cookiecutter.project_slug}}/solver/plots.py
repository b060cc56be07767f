"""PNG pictures of what people would rather look at than read: the training plan, learning curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from solver.atomic import atomic_write  # noqa: E402


def _save(fig, path: Path) -> Path:
    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    atomic_write(path, write)
    plt.close(fig)
    return path


def plot_plan(plan: pd.DataFrame, path: Path, title: str) -> Path:
    fig, axes = plt.subplots(4, 1, figsize=(9, 8), sharex=True)
    x = plan["step"]
    axes[0].plot(x, plan["lr"], color="tab:blue")
    axes[0].set_ylabel("lr")
    axes[1].step(x, plan["image_size"], where="post", color="tab:green")
    axes[1].set_ylabel("image size")
    axes[2].step(x, plan["aug_p"], where="post", color="tab:orange")
    axes[2].set_ylabel("aug p")
    axes[2].set_ylim(-0.05, 1.05)
    axes[3].step(x, plan["mixup_alpha"], where="post", color="tab:red", label="mixup")
    axes[3].step(x, plan["cutmix_alpha"], where="post", color="tab:purple", label="cutmix")
    axes[3].set_ylabel("alpha")
    axes[3].legend(loc="upper right")
    axes[3].set_xlabel("optimizer step")
    for stage_start in plan.groupby("stage")["step"].min().iloc[1:]:
        for ax in axes:
            ax.axvline(stage_start, color="grey", linestyle=":", linewidth=1)
    axes[0].set_title(title)
    return _save(fig, path)


def plot_learning_curves(metrics: pd.DataFrame, metric_name: str, path: Path, title: str) -> Path:
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    x = metrics["epoch"]
    axes[0].plot(x, metrics["train_loss"], marker=".", label="train")
    axes[0].plot(x, metrics["valid_loss"], marker=".", label="valid")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[1].plot(x, metrics[metric_name], marker=".", label="model")
    if f"ema_{metric_name}" in metrics and metrics[f"ema_{metric_name}"].notna().any():
        axes[1].plot(x, metrics[f"ema_{metric_name}"], marker=".", label="EMA")
        axes[1].legend()
    axes[1].set_ylabel(metric_name)
    axes[2].plot(x, metrics["lr"], marker=".")
    axes[2].set_ylabel("lr (epoch start)")
    axes[2].set_xlabel("epoch")
    axes[0].set_title(title)
    return _save(fig, path)
