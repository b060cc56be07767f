#!/usr/bin/env python
"""Benchmark, not a test: the digits demo's recipe against a plain loop at the same wall time, side by side.

recipe: exp001_resnet10t as it is (warmup, cyclic LR with decaying amplitude, small-to-full image size,
        augmentation ramp, MixUp, EMA, a final fine-tune without augmentation)
plain:  the same model and augmentations, constant-LR Adam (1e-3), full image size, augmentation always on,
        no MixUp, no EMA, no early stopping, stopped by the recipe's own training time per fold

  python benchmarks/recipe_vs_plain.py [--root .]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.custom import load_module  # noqa: E402
from solver.competition.contract import Competition  # noqa: E402
from solver.train.run import train_experiment  # noqa: E402

PLAIN = [
    "train.stages=null",
    "train.schedule.name=constant",
    "train.lr=1e-3",
    "train.ema_decay=null",
    "train.early_stopping_patience=null",
    "train.epochs=1000",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--exp", default="exp001_resnet10t")
    args = parser.parse_args()
    comp = Competition.load(args.root, "digits")
    load_module(comp.folder / "prepare.py").prepare(comp.data_dir)
    rows = []
    start = time.perf_counter()
    recipe = train_experiment(args.root, "digits", args.exp, run_name="bench_recipe", fresh=True)
    recipe_minutes = (time.perf_counter() - start) / 60
    rows.append(("recipe", recipe, recipe_minutes))
    per_fold = recipe_minutes / comp.cfg.n_folds
    start = time.perf_counter()
    plain = train_experiment(
        args.root, "digits", args.exp, overrides=[*PLAIN, f"train.time_budget_minutes={per_fold:.3f}"], run_name="bench_plain", fresh=True
    )
    rows.append(("plain", plain, (time.perf_counter() - start) / 60))
    print(f"\n{'run':8s} {'CV accuracy':>12s} {'held-out accuracy':>18s} {'minutes':>8s}")
    for name, score, minutes in rows:
        print(f"{name:8s} {score['cv']:12.4f} {score['holdout']:18.4f} {minutes:8.2f}")
    n_test = len(comp.read_test())
    wrong = {name: round((1 - score["holdout"]) * n_test) for name, score, _ in rows}
    print(f"held-out images wrong of {n_test}: recipe {wrong['recipe']}, plain {wrong['plain']}")


if __name__ == "__main__":
    main()
