#!/usr/bin/env python
"""Benchmark, not a test: is the DataLoader the bottleneck? In one process, side by side:

loader: the experiment's training DataLoader (OpenCV decoding or the image cache, the albumentations train
        pipeline at full augmentation, collation) iterated without a model, with 0 and with N workers
model:  the experiment's model trained by the solver's loop (Trainer.train_epoch) on batches already in memory

The loader keeps up when its img/s is above the model's: ratio loader / model >= 1.

python benchmarks/loader_throughput.py [--comp digits] [--exp exp001_resnet10t] [--workers N] [--batches 20] [--no-cache]
(the demo's data first: python digits/prepare.py)
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

import torch  # noqa: E402

from solver.base.errors import run_cli  # noqa: E402
from solver.nn.curriculum import make_schedule  # noqa: E402
from solver.nn.runtime import make_loader, resolve_device  # noqa: E402
from solver.train.experiment import build_model, fold_datasets, load_experiment, train_transform  # noqa: E402
from solver.train.loop import Trainer  # noqa: E402


def loader_speed(dataset, batch: int, workers: int, batches: int, device, repeats: int) -> list[float]:
    """img/s of one pass over `batches` batches, worker start-up excluded (the first batch starts the clock)."""
    speeds = []
    for r in range(repeats):
        loader = make_loader(dataset, batch, True, workers, r, device)
        it = iter(loader)
        next(it)
        start, seen = time.perf_counter(), 0
        for _ in range(batches):
            try:
                x, _ = next(it)
            except StopIteration:
                break
            seen += len(x)
        speeds.append(seen / (time.perf_counter() - start))
        del it, loader
    return speeds


def model_speed(exp, trainer: Trainer, batches: list, repeats: int) -> list[float]:
    ep = trainer.epochs[-1]  # full image size
    trainer.schedule = make_schedule(trainer.optimizer, trainer.segments[ep.segment], trainer.n_steps, True)
    trainer.train_epoch(batches[:2], ep, "warm-up")
    n = sum(len(x) for x, _ in batches)
    speeds = []
    for _ in range(repeats):
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.train_epoch(batches, ep, "model")
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        speeds.append(n / (time.perf_counter() - start))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--comp", default="digits")
    parser.add_argument("--exp", default="exp001_resnet10t")
    parser.add_argument("--workers", type=int, default=None, help="the N of 'N workers' (default: data.num_workers=auto, at least 1)")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-cache", action="store_true", help="decode from disk every time (data.cache_images=false)")
    args = parser.parse_args()
    overrides = ["data.cache_images=false"] if args.no_cache else []
    exp = load_experiment(args.root, args.comp, args.exp, overrides)
    cfg = exp.cfg
    device = resolve_device(cfg.train.device)
    workers = args.workers if args.workers is not None else max(1, cfg.data.num_workers)
    train_ds, _, _, _ = fold_datasets(exp, 0)
    size = cfg.data.image_size
    train_ds.transform = train_transform(exp)(size, 1.0, 0)
    print(
        f"{args.comp}/{args.exp}: {cfg.model.name}, {size}px, batch {cfg.data.batch_size}, {len(train_ds)} training images of fold 0, "
        f"{'decoded from disk' if exp.train_images is None else 'image cache'}, {device}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    batch = cfg.data.batch_size
    results = {}
    for n_workers in sorted({0, workers}):
        results[f"loader, {n_workers} workers"] = loader_speed(train_ds, batch, n_workers, args.batches, device, args.repeats)
    in_memory = [b for _, b in zip(range(args.batches), make_loader(train_ds, batch, True, 0, 0, device))]
    trainer = Trainer(build_model(exp), cfg, exp.comp.metric, exp.comp.cfg.task, exp.comp.num_classes, device, len(train_ds))
    model = statistics.median(model_speed(exp, trainer, in_memory, args.repeats))
    print(f"  {'model (solver loop)':24s} img/s  median {model:8.1f}")
    for name, speeds in results.items():
        median = statistics.median(speeds)
        verdict = "keeps up" if median >= model else "BOTTLENECK"
        print(f"  {name:24s} img/s  median {median:8.1f}   ratio loader / model = {median / model:6.2f}  ({verdict})")


if __name__ == "__main__":
    run_cli(main)  # a missing data set or a bad config: one error line
