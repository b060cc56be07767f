#!/usr/bin/env python
"""Benchmark, not a test: two fold jobs side by side against one job training both folds in sequence.

On a synthetic two-fold competition (tests/synthetic.py), each a separate `python -m solver train` process:
  sequence          one job, --fold 0,1, every core's threads (torch's default)
  side by side      two jobs at once, --fold 0 and --fold 1, each --jobs 2: cores // 2 threads (solver/base/threads.py)
  side by side, all threads   the same two jobs without --jobs: each takes every core (what issue 16 measured 8x slower)
Wall-clock seconds of each run, and the ratio to the sequence (< 1: side by side is faster). Each run trains the same
folds from scratch into its own run folder; the process start and data loading count in every row alike.

python benchmarks/parallel_folds.py [--model resnet10t] [--size 32] [--images 256] [--epochs 2] [--no-oversubscribed]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import REPO

sys.path.insert(0, str(REPO))  # this repository's solver and its synthetic data, installed or not

from solver.base.threads import available_cores  # noqa: E402
from tests.synthetic import make_competition  # noqa: E402


def fold_job(root: Path, name: str, folds: str, jobs: int | None) -> list[str]:
    command = [sys.executable, "-m", "solver", "train", "--root", str(root), "--comp", "synth", "--exp", "bench", "--fold", folds, "--name", name]
    return command + (["--jobs", str(jobs)] if jobs else [])


def timed(commands: list[list[str]], env: dict) -> float:
    """Start every command at once; the wall-clock seconds until the last one ends."""
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"{' '.join(proc.args)} failed:\n{err[-2000:]}")
        for line in out.splitlines():
            if line.startswith("threads:"):
                print(f"  {line}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=256, help="training images (two folds of half each)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-oversubscribed", action="store_true", help="skip the side-by-side run where each job takes every core")
    args = parser.parse_args()

    experiment = {
        "model": {"name": args.model},
        "data": {"image_size": args.size, "batch_size": 16, "num_workers": 0},
        "train": {"epochs": args.epochs, "lr": 1e-3, "early_stopping_patience": None, "device": "cpu"},
    }
    # The jobs choose their own threads: drop this shell's thread settings (a test's OMP_NUM_THREADS=1).
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)  # python -m solver finds this repository's solver
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_competition(root, n_train=args.images, n_test=16, size=args.size, experiment=experiment)
        (root / "synth/configs/bench.yaml").write_text((root / "synth/configs/tiny.yaml").read_text())
        print(f"{args.model} at {args.size} px, {args.images} images, 2 folds x {args.epochs} epochs, {available_cores()} core(s)")
        rows = [("sequence (one job, --fold 0,1)", timed([fold_job(root, "sequence", "0,1", None)], env))]
        rows.append(("side by side (--jobs 2)", timed([fold_job(root, "shared", str(k), 2) for k in (0, 1)], env)))
        if not args.no_oversubscribed:
            rows.append(("side by side, all threads each", timed([fold_job(root, "oversubscribed", str(k), None) for k in (0, 1)], env)))
    sequence = rows[0][1]
    print("\n| run | wall s | / sequence |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / sequence:.2f}x |")
    print(f"\nratio side by side / sequence: {rows[1][1] / sequence:.2f} (below 1: the two fold jobs finish sooner than one job doing both)")


if __name__ == "__main__":
    main()
