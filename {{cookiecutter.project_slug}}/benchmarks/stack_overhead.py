#!/usr/bin/env python
"""Benchmark, not a test: the cost of the solver's LightGBM stack against one bare lightgbm.train, in one run.

  stack  solver.stacking.stack_lgbm with the settings a default <comp>/stacks/<name>.yaml gives (what `make lgbm` runs):
         per outer fold, an inner lightgbm.cv (early stopping) picks the round count, then a refit on the fold's
         training rows predicts the fold and the test set
  bare   lightgbm.train with the same params and num_threads on the whole matrix, for the stack's mean round count,
         then one prediction of the test set: a single model with no out-of-fold predictions and no honest CV score

The matrix is shaped like a real level-2 input: the class probabilities of several noisy first-level models.
lightgbm.cv and lightgbm.train are wrapped with timers (nothing else changes) to split the stack's time into
inner CV, refit and the rest; the rounds and rows x rounds each part trains are printed next to it.

  python benchmarks/stack_overhead.py [--rows 5000] [--classes 10] [--models 4] [--folds 5] [--threads 1]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from solver.config import LgbmSpec  # noqa: E402
from solver.stacking import StackSettings, _params, stack_lgbm  # noqa: E402


def make_matrix(rows: int, test_rows: int, classes: int, models: int, folds: int, seed: int):
    """(X, y, folds, X_test): softmax outputs of `models` first-level models of increasing strength."""
    rng = np.random.default_rng(seed)
    y_all = rng.integers(classes, size=rows + test_rows)
    blocks = {}
    for m in range(models):
        logits = rng.normal(size=(len(y_all), classes)) + (1.0 + 0.5 * m) * np.eye(classes)[y_all]
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        for j in range(classes):
            blocks[f"exp{m}_p{j}"] = p[:, j]
    frame = pd.DataFrame(blocks)
    fold = rng.permutation(np.arange(rows) % folds)
    return frame.iloc[:rows].reset_index(drop=True), y_all[:rows], fold, frame.iloc[rows:].reset_index(drop=True)


class Timed:
    """Wraps a lightgbm function (lightgbm.cv / lightgbm.train) and adds up its calls' wall time."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, []

    def __call__(self, params, train_set, *args, **kwargs):
        start = time.perf_counter()
        result = self.fn(params, train_set, *args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls.append((train_set.num_data(), kwargs.get("num_boost_round", args[0] if args else None), result))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--models", type=int, default=4, help="first-level models: columns = models x classes")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=LgbmSpec().num_threads)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    X, y, folds, X_test = make_matrix(args.rows, args.test_rows, args.classes, args.models, args.folds, args.seed)
    settings = StackSettings(**{**LgbmSpec().model_dump(), "num_threads": args.threads})
    print(
        f"{args.rows} x {X.shape[1]} matrix ({args.models} models x {args.classes} classes), {args.test_rows} test rows, "
        f"{args.folds} folds, inner_folds={settings.inner_folds}, early_stopping_rounds={settings.early_stopping_rounds}, "
        f"num_threads={args.threads}",
        flush=True,
    )

    cv, train = Timed(lgb.cv), Timed(lgb.train)
    lgb.cv, lgb.train = cv, train  # solver.stacking looks both up on the module at call time
    try:
        start = time.perf_counter()
        stack_lgbm(X, y, folds, X_test, "multiclass", args.classes, settings, progress=False)
        stack_s = time.perf_counter() - start
    finally:
        lgb.cv, lgb.train = cv.fn, train.fn
    best = [len(next(v for k, v in result.items() if k.endswith("-mean"))) for _, _, result in cv.calls]
    rounds = max(1, round(float(np.mean(best))))

    params = _params(settings, "multiclass", args.classes)
    start = time.perf_counter()
    booster = lgb.train(params, lgb.Dataset(X.to_numpy(np.float64), y, params={"verbosity": -1}), num_boost_round=rounds)
    booster.predict(X_test.to_numpy(np.float64))
    bare_s = time.perf_counter() - start

    # Two cost models. Per tree, LightGBM's histogram work grows with rows but its split search (features x bins x
    # leaves) does not, so on small level-2 matrices the time follows the round count more than rows x rounds.
    inner_rows = [n * (settings.inner_folds - 1) / settings.inner_folds for n, _, _ in cv.calls]
    cv_run = [min(b + settings.early_stopping_rounds, settings.num_boost_round) for b in best]  # rounds lgb.cv ran
    parts = {
        "cv": (settings.inner_folds * sum(cv_run), sum(settings.inner_folds * r * n for r, n in zip(cv_run, inner_rows))),
        "refit": (sum(r for _, r, _ in train.calls), sum(n * r for n, r, _ in train.calls)),
    }
    bare_work = (rounds, args.rows * rounds)
    stack_work = tuple(a + b for a, b in zip(parts["cv"], parts["refit"]))
    other_s = stack_s - cv.seconds - train.seconds

    def row(name: str, seconds: float, work: tuple) -> str:
        return (
            f"| {name} | {seconds:.2f} | {seconds / bare_s:.1f}x | {work[0]:,} | {work[0] / bare_work[0]:.1f}x | "
            f"{work[1]:,.0f} | {work[1] / bare_work[1]:.1f}x |"
        )

    print(f"\nround counts chosen per fold: {best} (bare model: {rounds}); lightgbm.cv ran {cv_run} rounds (best + early stopping)\n")
    print("| run | seconds | x bare | rounds trained | x bare | rows x rounds | x bare |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(row(f"bare lightgbm.train ({rounds} rounds) + predict test", bare_s, bare_work))
    print(row("stack_lgbm (make lgbm)", stack_s, stack_work))
    print(row(f"- inner lightgbm.cv, {len(cv.calls)} folds x {settings.inner_folds} models", cv.seconds, parts["cv"]))
    print(row(f"- refit lightgbm.train, {len(train.calls)} folds", train.seconds, parts["refit"]))
    print(row("- the rest (checks, predictions, bookkeeping)", other_s, (0, 0)))
    print(
        f"\nratio stack / bare: {stack_s / bare_s:.1f}x (inner CV share of the stack: {cv.seconds / stack_s:.0%}, "
        f"refit share: {train.seconds / stack_s:.0%})"
    )


if __name__ == "__main__":
    main()
