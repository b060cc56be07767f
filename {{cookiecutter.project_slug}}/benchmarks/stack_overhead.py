#!/usr/bin/env python
"""Benchmark, not a test: the solver's stack against the out-of-fold LightGBM stack a competitor writes by hand, in one run.

  peer         lightgbm.cv(params, folds=the competition's folds, return_cvbooster=True) with early stopping: fold f's
               OOF from the booster that did not train on it, the test set from the mean of the boosters. One round
               count for all folds, chosen by early stopping ON the folds' own labels: its OOF score is optimistic.
  stack_lgbm   solver.level2.stack.stack_lgbm, model lgbm: per outer fold, lightgbm.cv on inner folds of the training
               rows only picks the rounds, and the mean of those inner boosters predicts the fold (no refit)
  stack auto   the default (`make lgbm`): logistic blends and LightGBM on the same inner folds, the lower inner-CV
               log loss per fold wins
  + refit      stack_lgbm with refit: true (what `make lgbm` did before: one more booster per fold)

Every run gets the same params and num_threads. The matrix is shaped like a real level-2 input: the logits of several
noisy first-level models. The optimism of a choice is measured on shuffled labels, where no honest OOF can beat
chance: the class prior's accuracy (the most frequent class) and log loss (the prior's entropy; 1/C and log C when
the classes are balanced). A lower OOF log loss there is the leak of choosing on the fold's labels.

With --root/--comp/--sources the matrix is a real one instead: the OOF and test log-probabilities of finished sources
of a multiclass competition, on its folds, as `make lgbm` builds it. Where the competition has held-out answers
(holdout_answers), each run's test predictions are scored on them too: OOF minus held-out is how optimistic a run's
own OOF score is on real data (a run that leaks shows a larger gap than the fold-safe ones).

  python benchmarks/stack_overhead.py [--rows 5000] [--classes 10] [--models 4] [--folds 5] [--threads 1]
  python benchmarks/stack_overhead.py --root . --comp usps --sources a_resnet10t,b_regnetx [--threads 1]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402

from solver.base.threads import library_threads  # noqa: E402
from solver.competition.contract import Competition  # noqa: E402
from solver.config.level2 import LgbmSpec  # noqa: E402
from solver.level2.stack import lgbm_params, stack_lgbm  # noqa: E402
from solver.level2.stages import logit_blocks, training_frame  # noqa: E402
from solver.runs.source import check_sources, load_source  # noqa: E402


def make_matrix(rows: int, test_rows: int, classes: int, models: int, folds: int, seed: int):
    """(X, y, folds, X_test): log-probabilities of `models` first-level models of increasing strength."""
    rng = np.random.default_rng(seed)
    y_all = rng.integers(classes, size=rows + test_rows)
    blocks = {}
    for m in range(models):
        logits = rng.normal(size=(len(y_all), classes)) + (1.0 + 0.5 * m) * np.eye(classes)[y_all]
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        for j in range(classes):
            blocks[f"exp{m}_logp{j}"] = log_p[:, j]
    frame = pd.DataFrame(blocks)
    fold = rng.permutation(np.arange(rows) % folds)
    return frame.iloc[:rows].reset_index(drop=True), y_all[:rows], fold, frame.iloc[rows:].reset_index(drop=True)


def real_matrix(root: Path, comp_name: str, names: list[str]):
    """(X, y, folds, X_test, blend_groups, metric, holdout): the stack's input on finished sources of a multiclass competition,
    as stack_stage builds it (log-probabilities per source, the metric that ranks the inner-CV candidates); holdout
    scores test probabilities on the answers, or is None."""
    comp = Competition.load(root, comp_name)
    if comp.cfg.task != "multiclass":
        raise SystemExit(f"{comp_name}: --sources needs a multiclass competition (this benchmark scores log loss over classes)")
    y, folds, train_ids, test_ids = training_frame(comp)
    sources = [load_source(comp, name, train_ids, test_ids) for name in names]
    check_sources(comp, sources)
    X, X_test, groups = logit_blocks(sources, comp.classes, "multiclass")
    X, X_test = pd.concat(X, axis=1), pd.concat(X_test, axis=1)
    answers = comp.read_holdout(pd.DataFrame({comp.cfg.id_column: test_ids}))
    holdout = None
    if answers is not None:
        labels = range(comp.num_classes)
        holdout = lambda probs: (log_loss(answers, probs, labels=labels), float((probs.argmax(1) == answers).mean()))  # noqa: E731
    return X, y, np.asarray(folds), X_test, groups, comp.metric, holdout


def peer(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, X_test: pd.DataFrame, params: dict, settings: LgbmSpec):
    """The hand-written OOF stack: one lightgbm.cv over the competition's folds. Returns (oof, test, rounds)."""
    x, x_test = X.to_numpy(np.float64), X_test.to_numpy(np.float64)
    splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(int(folds.max()) + 1)]
    result = lgb.cv(
        params,
        lgb.Dataset(x, y, params={"verbosity": -1}, free_raw_data=False),
        num_boost_round=settings.num_boost_round,
        folds=splits,
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
        return_cvbooster=True,
    )
    boosters, rounds = result["cvbooster"].boosters, result["cvbooster"].best_iteration
    oof = np.zeros((len(x), int(y.max()) + 1))
    for booster, (_, valid) in zip(boosters, splits):
        oof[valid] = booster.predict(x[valid], num_iteration=rounds)
    test = np.mean([b.predict(x_test, num_iteration=rounds) for b in boosters], axis=0)
    return oof, test, rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--models", type=int, default=4, help="first-level models: columns = models x classes")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=library_threads(), help="LightGBM's num_threads (default: the stack's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inner-folds", type=int, help=f"the stacks' inner folds (default: lgbm.inner_folds, {LgbmSpec().inner_folds})")
    parser.add_argument("--root", type=Path, default=Path("."), help="with --comp and --sources: the repository root")
    parser.add_argument("--comp", help="a multiclass competition whose sources are finished (real data instead of the synthetic matrix)")
    parser.add_argument("--sources", help="comma-separated source names under runs/<comp>/, e.g. a_resnet10t,b_regnetx")
    args = parser.parse_args()
    groups, metric, holdout = [], None, None
    if args.comp:
        X, y, folds, X_test, groups, metric, holdout = real_matrix(args.root, args.comp, (args.sources or "").split(","))
        args.rows, args.test_rows, args.classes, args.models, args.folds = len(X), len(X_test), len(groups[0]), len(groups), int(folds.max()) + 1
    else:
        X, y, folds, X_test = make_matrix(args.rows, args.test_rows, args.classes, args.models, args.folds, args.seed)
    shuffled = np.random.default_rng(args.seed + 1).permutation(y)
    settings = LgbmSpec(num_threads=args.threads, **({"inner_folds": args.inner_folds} if args.inner_folds else {}))
    prior = np.bincount(y, minlength=args.classes) / len(y)  # shuffling keeps it: chance is the prior, not 1/C
    params = lgbm_params(settings, "multiclass", args.classes, int((folds != 0).sum()))
    print(
        f"{args.rows} x {X.shape[1]} matrix ({args.models} models x {args.classes} classes), {args.test_rows} test rows, "
        f"{args.folds} folds, inner_folds={settings.inner_folds}, early_stopping_rounds={settings.early_stopping_rounds}, "
        f"min_data_in_leaf={params['min_data_in_leaf']}, num_threads={args.threads}; chance: accuracy {prior.max():.3f}, "
        f"log loss {-(prior[prior > 0] * np.log(prior[prior > 0])).sum():.4f}",
        flush=True,
    )
    runs = {
        "peer: lightgbm.cv(folds=competition folds, return_cvbooster=True)": lambda labels: peer(X, labels, folds, X_test, params, settings)[:2],
        "stack_lgbm (model: lgbm, inner boosters averaged)": lambda labels: stack(
            X, labels, folds, X_test, args.classes, settings.model_copy(update={"model": "lgbm"}), groups, metric
        ),
        "stack auto (make lgbm: logistic or LightGBM by inner CV)": lambda labels: stack(
            X, labels, folds, X_test, args.classes, settings, groups, metric
        ),
        "stack_lgbm + refit (the earlier make lgbm)": lambda labels: stack(
            X, labels, folds, X_test, args.classes, settings.model_copy(update={"model": "lgbm", "refit": True}), groups, metric
        ),
    }
    rows, peer_s = [], None
    for name, fn in runs.items():
        start = time.perf_counter()
        oof, test = fn(y)
        seconds = time.perf_counter() - start
        peer_s = peer_s or seconds
        oof_shuffled, _ = fn(shuffled)
        oof_loss, oof_accuracy = log_loss(y, oof, labels=range(args.classes)), (oof.argmax(1) == y).mean()
        cells = [f"{seconds:.2f}", f"{seconds / peer_s:.2f}x", f"{oof_loss:.4f}", f"{oof_accuracy:.4f}"]
        cells += [f"{log_loss(shuffled, oof_shuffled, labels=range(args.classes)):.4f}", f"{(oof_shuffled.argmax(1) == shuffled).mean():.4f}"]
        if holdout:
            held_loss, held_accuracy = holdout(test)
            cells += [f"{held_loss:.4f}", f"{held_accuracy:.4f}", f"{held_loss - oof_loss:+.4f}", f"{oof_accuracy - held_accuracy:+.4f}"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        print(f"{name}: {seconds:.2f} s", flush=True)
    header = ["seconds", "x peer", "OOF log loss", "OOF accuracy", "shuffled labels: OOF log loss", "shuffled: accuracy"]
    if holdout:
        header += ["held-out log loss", "held-out accuracy", "held-out - OOF log loss", "OOF - held-out accuracy"]
    print("\n| run | " + " | ".join(header) + " |")
    print("|---|" + "---:|" * len(header))
    print("\n".join(rows))


def stack(X, y, folds, X_test, classes: int, settings: LgbmSpec, blend_groups=(), metric=None):
    oof, test, _ = stack_lgbm(X, y, folds, X_test, "multiclass", classes, settings, progress=False, blend_groups=blend_groups, metric=metric)
    return oof, test


if __name__ == "__main__":
    main()
