#!/usr/bin/env python
"""GPU check, not a test: train the demo's model with each speed switch on and off and print img/s.

Switches: train.amp=bf16 (autocast; off is fp32), train.channels_last, train.compile (torch.compile). Each row
is the baseline (all off) with one switch on, then all of them together; every row trains a fresh model with
the solver's loop (Trainer.train_epoch) on the same in-memory batches of fold 0, after a warm-up pass (which
absorbs torch.compile's compilation). On a machine without CUDA, AMP and compile are reported as skipped.

python benchmarks/gpu_check.py [--comp digits] [--exp exp001_resnet10t] [--size 224] [--batch 256] [--batches 30]
(the demo's data first: python digits/prepare.py; --size upsamples the 8x8 digits to a GPU-sized workload)
"""

import argparse
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

SWITCHES = {"amp": {"amp": "bf16"}, "channels_last": {"channels_last": True}, "compile": {"compile": True}}
NEEDS_CUDA = {"amp", "compile"}  # bf16 autocast and inductor's kernels are what this checks on a GPU


def speed(exp, train_spec: dict, batches: list, device, repeats: int) -> float:
    cfg = exp.cfg.model_copy(update={"train": exp.cfg.train.model_copy(update=train_spec)})
    trainer = Trainer(build_model(exp), cfg, exp.comp.metric, exp.comp.cfg.task, exp.comp.num_classes, device, len(batches) * cfg.data.batch_size)
    ep = trainer.epochs[-1]
    trainer.schedule = make_schedule(trainer.optimizer, trainer.segments[ep.segment], trainer.n_steps, True)
    trainer.train_epoch(batches, ep, "warm-up")
    n = sum(len(x) for x, _ in batches)
    speeds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.train_epoch(batches, ep, "timed")
        if device.type == "cuda":
            torch.cuda.synchronize()
        speeds.append(n / (time.perf_counter() - start))
    return statistics.median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--comp", default="digits")
    parser.add_argument("--exp", default="exp001_resnet10t")
    parser.add_argument("--size", type=int, help="image size (default: the experiment's)")
    parser.add_argument("--batch", type=int, help="batch size (default: the experiment's)")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    overrides = [f"train.device={args.device}", "train.amp='off'", "train.ema_decay=null", "train.mixup_alpha=0", "train.stages=null"]
    overrides += [f"data.image_size={args.size}"] if args.size else []
    overrides += [f"data.batch_size={args.batch}"] if args.batch else []
    exp = load_experiment(args.root, args.comp, args.exp, overrides)
    device = resolve_device(exp.cfg.train.device)
    cfg = exp.cfg
    train_ds, _, _, _ = fold_datasets(exp, 0)
    train_ds.transform = train_transform(exp)(cfg.data.image_size, 1.0, 0)
    loader = make_loader(train_ds, cfg.data.batch_size, True, cfg.data.num_workers, 0, device)
    batches = []
    while len(batches) < args.batches:  # cycle over the fold when it has fewer batches
        batches += [b for _, b in zip(range(args.batches - len(batches)), loader)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{args.comp}/{args.exp}: {cfg.model.name}, {cfg.data.image_size}px, batch {cfg.data.batch_size}, {len(batches)} batches per pass, "
        f"{device} ({name}), torch {torch.__version__}"
    )
    rows = {"baseline (fp32, contiguous, eager)": {}}
    rows.update({f"+ {switch}": spec for switch, spec in SWITCHES.items()})
    rows["+ all"] = {k: v for spec in SWITCHES.values() for k, v in spec.items()}
    base = None
    for label, spec in rows.items():
        needs = [s for s in SWITCHES if s in NEEDS_CUDA and any(k in spec for k in SWITCHES[s])]
        if needs and device.type != "cuda":
            print(f"  {label:36s} skipped ({', '.join(needs)} needs CUDA)")
            continue
        value = speed(exp, spec, batches, device, args.repeats)
        base = base or value
        print(f"  {label:36s} {value:9.1f} img/s   x{value / base:.2f} vs baseline")


if __name__ == "__main__":
    run_cli(main)  # a missing data set or a bad config: one error line
