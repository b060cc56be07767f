#!/usr/bin/env python
"""Benchmark, not a test: does the prior-shift adjustment (make adapt, method prior_shift) help on your own model?

Takes a source's OOF probabilities (labelled rows the model did not train on), resamples them to several shifted
class priors (seeded Dirichlet draws, plus one unshifted control), and for each sample prints the true priors'
distance to the training priors and to the EM estimate (mean absolute error over classes), the EM estimate's
distance to QuaPy's EMQ on the same posteriors (when quapy is installed), and log loss and accuracy before the
adjustment, after it, and with the true priors (the oracle).

The posteriors are first temperature-scaled on the OOF, fold-safe, as `make adapt` does (--calibrate none skips it).

python benchmarks/prior_shift_oof.py --comp digits --source exp001_resnet10t [--shifts 6] [--alpha 1.0] [--rows 2000] [--seed 0]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402

from solver.adapt.prior_shift import adjust, apply_temperature, class_priors, estimate_priors, fit_temperature, resample_to_priors  # noqa: E402
from solver.base.errors import SolverError, run_cli  # noqa: E402
from solver.competition.contract import Competition  # noqa: E402
from solver.level2.stages import training_frame  # noqa: E402
from solver.runs.source import check_sources, load_source  # noqa: E402


def quapy_em(train_priors: np.ndarray, posteriors: np.ndarray) -> np.ndarray | None:
    try:
        from quapy.method.aggregative import EMQ
    except ImportError:
        return None
    return EMQ.EM(train_priors, posteriors, epsilon=1e-8)[0]


def calibrate(y: np.ndarray, oof: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Temperature scaling as `make adapt` does it: fold k's rows with a temperature fitted on the other folds."""
    out, temperatures = np.empty_like(oof), []
    for k in np.unique(folds):
        rows = folds == k
        temperatures.append(fit_temperature(oof[~rows], y[~rows]))
        out[rows] = apply_temperature(oof[rows], temperatures[-1])
    return out, temperatures


def _normalised(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, None)
    return p / p.sum(axis=1, keepdims=True)


def shift_table(
    y: np.ndarray, oof: np.ndarray, num_classes: int, shifts: int, alpha: float, rows: int | None, seed: int, calibrated: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per resampled OOF: true vs estimated priors, log loss and accuracy before / after / oracle.

    before: the source's posteriors as they are; after: what `make adapt` makes of them (calibrated when given, then
    adjusted to the EM estimate); oracle: the same, adjusted to the sample's true priors.
    """
    oof = _normalised(oof)
    calibrated = oof if calibrated is None else _normalised(calibrated)
    train_priors = class_priors(y, num_classes)
    rng = np.random.default_rng(seed)
    rows = rows or len(y)
    labels = range(num_classes)
    targets = [("none", train_priors)] + [(f"dirichlet {i + 1}", rng.dirichlet(np.full(num_classes, alpha))) for i in range(shifts)]
    table = []
    for name, priors in targets:
        index = resample_to_priors(y, priors, rows, rng)
        yy, pp, cc = y[index], oof[index], calibrated[index]
        true = class_priors(yy, num_classes)
        estimated, adjusted, iterations = estimate_priors(cc, train_priors)
        oracle = adjust(cc, train_priors, true)
        theirs = quapy_em(train_priors, cc)
        table.append(
            {
                "shift": name,
                "max prior": true.max(),
                "MAE train": np.abs(train_priors - true).mean(),
                "MAE EM": np.abs(estimated - true).mean(),
                "EM vs QuaPy": np.abs(estimated - theirs).mean() if theirs is not None else np.nan,
                "iters": iterations,
                "logloss before": log_loss(yy, pp, labels=labels),
                "logloss after": log_loss(yy, adjusted, labels=labels),
                "logloss oracle": log_loss(yy, oracle, labels=labels),
                "acc before": (pp.argmax(1) == yy).mean(),
                "acc after": (adjusted.argmax(1) == yy).mean(),
                "acc oracle": (oracle.argmax(1) == yy).mean(),
            }
        )
    return pd.DataFrame(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--comp", required=True)
    parser.add_argument("--source", required=True, help="a source under runs/<comp>/ (an experiment, ensemble, ...)")
    parser.add_argument("--shifts", type=int, default=6, help="shifted samples (plus one unshifted control)")
    parser.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration of the shifted priors (smaller: stronger shifts)")
    parser.add_argument("--rows", type=int, default=None, help="rows per sample (default: as many as the OOF)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate", choices=["temperature", "none"], default="temperature", help="as the adapt config's calibrate")
    args = parser.parse_args()
    comp = Competition.load(args.root, args.comp)
    if comp.cfg.task != "multiclass":
        raise SolverError(f"{comp.name} is {comp.cfg.task}; this benchmark resamples class priors of a multiclass competition")
    y, folds, train_ids, test_ids = training_frame(comp)
    source = load_source(comp, args.source, train_ids, test_ids)
    check_sources(comp, [source])
    calibrated, calibration = None, "not calibrated"
    if args.calibrate == "temperature":
        calibrated, temperatures = calibrate(y, source.oof, folds)
        calibration = f"temperature-scaled fold-safe, T per fold {', '.join(f'{t:.3f}' for t in temperatures)}"
    df = shift_table(y, source.oof, comp.num_classes, args.shifts, args.alpha, args.rows, args.seed, calibrated)
    rows = args.rows or len(y)
    print(f"{comp.name}/{args.source}: OOF of {len(y)} rows ({calibration}), {comp.num_classes} classes, {rows} rows per sample, seed {args.seed}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}", formatters={"EM vs QuaPy": lambda v: f"{v:.1e}"}))
    shifted = df.iloc[1:]
    print(
        f"shifted samples, mean: prior MAE {shifted['MAE train'].mean():.4f} (training priors) -> {shifted['MAE EM'].mean():.4f} (EM); "
        f"log loss {shifted['logloss before'].mean():.4f} -> {shifted['logloss after'].mean():.4f}; "
        f"accuracy {shifted['acc before'].mean():.4f} -> {shifted['acc after'].mean():.4f}"
    )


if __name__ == "__main__":
    run_cli(main)
