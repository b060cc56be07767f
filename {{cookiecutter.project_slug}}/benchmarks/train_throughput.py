#!/usr/bin/env python
"""Benchmark, not a test: training img/s of the solver's loop (Trainer.train_epoch, what train_fold runs)
against a bare hand-written PyTorch loop, side by side in one process.

Same model (timm, same name and init), same batches (in memory, so the loader costs nothing to either),
same batch size, same optimizer (Adam, same lr); the two alternate, each repeat in the other order, and the
ratio is of the medians. Target: solver / bare >= 0.95. Each pass is timed by the wall clock and by this
process's CPU time: on a shared machine the CPU-time ratio (with --threads 1: no thread spinning) is the one
that other jobs' load does not move.

python benchmarks/train_throughput.py [--model resnet10t] [--size 64] [--batch 32] [--images 512] [--repeats 5]
                                      [--device auto] [--amp bf16] [--channels-last]
"""

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

import timm  # noqa: E402
import torch  # noqa: E402

from solver.competition.metrics import get_metric  # noqa: E402
from solver.config.experiment import ExperimentConfig  # noqa: E402
from solver.nn.curriculum import make_schedule  # noqa: E402
from solver.nn.runtime import resolve_device  # noqa: E402
from solver.train.loop import Trainer  # noqa: E402

CLASSES = 10


def make_batches(images: int, size: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(images, 3, size, size, generator=generator)
    y = torch.randint(0, CLASSES, (images,), generator=generator)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, images - batch + 1, batch)]


def new_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=CLASSES)


def solver_loop(args, device: torch.device, batches):
    cfg = ExperimentConfig.model_validate(
        {
            "model": {"name": args.model},
            "data": {"image_size": args.size, "batch_size": args.batch},
            "train": {"epochs": 1, "lr": 1e-3, "schedule": {"name": "constant"}, "amp": args.amp, "channels_last": args.channels_last},
        }
    )
    trainer = Trainer(new_model(args.model), cfg, get_metric("accuracy", "multiclass"), "multiclass", CLASSES, device, len(batches) * args.batch)
    trainer.schedule = make_schedule(trainer.optimizer, trainer.segments[0], trainer.n_steps, True)
    ep = trainer.epochs[0]
    return lambda: trainer.train_epoch(batches, ep, "solver")


def bare_loop(args, device: torch.device, batches):
    model = new_model(args.model).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype and device.type == "cuda" else nullcontext

    def epoch():
        model.train()
        for x, y in batches:
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = criterion(model(x).float(), y)
            loss.backward()
            optimizer.step()

    return epoch


def timed(fn, device: torch.device) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one pass."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"], help="autocast in both loops (CUDA)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type != "cuda":
        args.amp = "off"  # the solver's AMP is a CUDA feature
    batches = make_batches(args.images, args.size, args.batch)
    n = len(batches) * args.batch
    loops = {"solver": solver_loop(args, device, batches), "bare": bare_loop(args, device, batches)}
    for loop in loops.values():  # warm-up: allocator, cuDNN autotuning, first-call overheads
        loop()
    speed = {(name, clock): [] for name in loops for clock in ("wall", "cpu")}
    for r in range(args.repeats):
        for name in list(loops) if r % 2 == 0 else list(loops)[::-1]:
            wall, cpu = timed(loops[name], device)
            speed[name, "wall"].append(n / wall)
            speed[name, "cpu"].append(n / cpu)
    print(
        f"{args.model} {args.size}px, batch {args.batch}, {n} images per epoch, {args.repeats} repeats, {device}, "
        f"amp {args.amp}, channels_last {args.channels_last}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for (name, clock), values in speed.items():
        print(f"  {name:7s} img/s per {clock:4s} second  median {statistics.median(values):8.1f}   all {', '.join(f'{v:.1f}' for v in values)}")
    for clock in ("wall", "cpu"):
        ratio = statistics.median(speed["solver", clock]) / statistics.median(speed["bare", clock])
        print(f"  ratio solver / bare ({clock} clock) = {ratio:.3f}  (target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})")


if __name__ == "__main__":
    main()
