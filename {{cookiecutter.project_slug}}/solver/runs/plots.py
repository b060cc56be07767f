"""PNG pictures of what people would rather look at than read: the training plan, learning curves, a run's
confusion matrix or per-label F1, the leaderboard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from solver.base.atomic import atomic_write


def _pyplot():
    """matplotlib.pyplot on the file-only backend, imported when a picture is drawn (about 0.7 s, which the verbs
    that draw nothing should not pay)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    atomic_write(path, write)
    plt.close(fig)
    return path


def plot_plan(plan: pd.DataFrame, path: Path, title: str) -> Path:
    plt = _pyplot()
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
    plt = _pyplot()
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


# --- reports of a run and of the leaderboard -------------------------------------------------------------------

MAX_LABELED_CLASSES = 40  # beyond this a confusion matrix's tick labels are unreadable: label every n-th class


def plot_confusion_matrix(y: np.ndarray, probs: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """OOF confusion matrix of a multiclass run, rows normalized (each true class sums to 1), counts in the title."""
    plt = _pyplot()
    n = len(classes)
    pred = probs.argmax(1)
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (y, pred), 1)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    side = min(4 + 0.35 * n, 16)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    step = max(1, int(np.ceil(n / MAX_LABELED_CLASSES)))
    ticks = np.arange(0, n, step)
    names = [str(classes[i])[:20] for i in ticks]
    ax.set_xticks(ticks, names, rotation=90 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(ticks, names)
    if n <= 15:  # numbers in the cells while they fit
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=8, color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\nOOF, {len(y)} rows, accuracy {(pred == y).mean():.4f}" + (f", 1 in {step} classes labeled" if step > 1 else ""))
    return _save(fig, path)


def per_label_f1(y: np.ndarray, probs: np.ndarray, threshold: float) -> np.ndarray:
    """F1 of each label of a multilabel run at the submission threshold (0 where a label is neither true nor predicted)."""
    pred = probs > threshold
    truth = y > 0.5
    tp = (pred & truth).sum(0)
    denominator = pred.sum(0) + truth.sum(0)
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def plot_per_label_f1(y: np.ndarray, probs: np.ndarray, classes: list[str], threshold: float, path: Path, title: str) -> Path:
    """Horizontal bars of each label's OOF F1, worst first, with each label's count of positives."""
    plt = _pyplot()
    f1 = per_label_f1(y, probs, threshold)
    support = (y > 0.5).sum(0)
    order = np.argsort(f1, kind="stable")
    fig, ax = plt.subplots(figsize=(8, min(2 + 0.28 * len(classes), 40)))
    ax.barh(np.arange(len(order)), f1[order], color="tab:blue")
    ax.set_yticks(np.arange(len(order)), [f"{str(classes[i])[:24]} ({support[i]})" for i in order], fontsize=8)
    ax.invert_yaxis()  # the worst label on top
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"F1 at threshold {threshold:g} (OOF)")
    ax.set_ylabel("label (positives)")
    ax.axvline(f1.mean(), color="tab:red", linestyle="--", label=f"macro F1 {f1.mean():.4f}")
    ax.legend(loc="lower right")
    ax.set_title(title)
    return _save(fig, path)


def plot_fold_curves(fold_metrics: dict[int, pd.DataFrame], metric_name: str, path: Path, title: str) -> Path:
    """Every fold's validation loss and metric per epoch in one picture: unstable folds stand out."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for k, metrics in sorted(fold_metrics.items()):
        line = axes[0].plot(metrics["epoch"], metrics["valid_loss"], marker=".", label=f"fold {k}")[0]
        axes[0].plot(metrics["epoch"], metrics["train_loss"], linestyle=":", color=line.get_color())
        if metric_name in metrics:
            axes[1].plot(metrics["epoch"], metrics[metric_name], marker=".", color=line.get_color())
    axes[0].set_ylabel("loss (valid, dotted: train)")
    axes[0].legend(fontsize=8)
    axes[1].set_ylabel(f"valid {metric_name}")
    axes[1].set_xlabel("epoch")
    axes[1].xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    axes[0].set_title(title)
    return _save(fig, path)


def write_run_plots(
    out_dir: Path,
    task: str,
    y: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    threshold: float,
    title: str,
    fold_dirs: list[Path],
    metric_name: str,
) -> list[Path]:
    """The PNGs of a finished run: confusion_matrix.png (multiclass) or per_label_f1.png (multilabel) from the OOF,
    and learning_curves.png of every fold together (when the folds logged metrics.csv)."""
    written = []
    if task == "multiclass":
        written.append(plot_confusion_matrix(np.asarray(y), probs, classes, out_dir / "confusion_matrix.png", title))
    else:
        written.append(plot_per_label_f1(np.asarray(y), probs, classes, threshold, out_dir / "per_label_f1.png", title))
    fold_metrics = {k: pd.read_csv(d / "metrics.csv") for k, d in enumerate(fold_dirs) if (d / "metrics.csv").is_file()}
    if fold_metrics:
        written.append(plot_fold_curves(fold_metrics, metric_name, out_dir / "learning_curves.png", title))
    return written


def plot_leaderboard(board: pd.DataFrame, path: Path, title: str, greater_is_better: bool) -> Path:
    """Horizontal bars of CV (best on top) with the folds' standard deviation as error bars, the held-out score
    as a red marker where known, stale sources greyed."""
    plt = _pyplot()
    board = board.dropna(subset=["cv"]).reset_index(drop=True)
    n = len(board)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.4 * max(n, 1)))
    y = np.arange(n)[::-1]  # the first row (the best) on top
    stale = board["stale"].eq(True).to_numpy()
    colors = np.where(stale, "lightgrey", "tab:blue")
    std = pd.to_numeric(board["cv_std"], errors="coerce").fillna(0).to_numpy()
    cv = board["cv"].astype(float).to_numpy()
    ax.barh(y, cv, xerr=std, color=colors, ecolor="black", capsize=3, label="CV (± fold std)")
    holdout = pd.to_numeric(board["holdout"], errors="coerce").to_numpy()
    known = ~np.isnan(holdout)
    if known.any():
        ax.scatter(holdout[known], y[known], color="tab:red", marker="D", zorder=3, label="held-out")
    ax.set_yticks(y, [f"{s}{' (stale)' if st else ''}" for s, st in zip(board["source"], stale)], fontsize=9)
    values = np.concatenate([cv - std, cv + std, holdout[known]])
    low, high = values.min(), values.max()
    # Zoom in (CVs usually differ in the third digit), but never to a range that makes equal scores look different.
    spread = max(high - low, 0.02 * abs(high), 1e-3)
    ax.set_xlim(max(low - spread, 0) if low >= 0 else low - spread, high + 0.4 * spread)
    for yi, value, error in zip(y, cv, std):
        ax.text(value + error, yi, f"  {value:.4f}", va="center", fontsize=8)
    ax.set_xlabel(str(board["metric"].iloc[0]) if n else "score")
    ax.set_title(title)
    ax.legend(loc="lower right" if greater_is_better else "lower left", fontsize=8)
    return _save(fig, path)
