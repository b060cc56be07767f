#!/usr/bin/env python
"""Benchmark, not a test: does each level-2 stage beat the best single model on a real competition?

Lays out a Kaggle-format competition (default: USPS digits from ../shared/comps/usps) as <root>/<comp>/ with two
diverse from-scratch models, trains both on every fold, then runs TTA, kNN features, a mean and a Caruana ensemble
and a stack, and prints one row per source: CV, held-out (scored with the answers file, never trained on), and
the difference to the best single model (chosen on CV) with its standard error:

  CV: the fold-paired difference, mean over folds of (source's fold score - best's fold score), SE = sd / sqrt(K)
  held-out: a paired bootstrap over the test rows (the same resampled rows score both), SE = sd of the differences

Resumable: finished folds are not trained again (the solver's own resume), TTA-N's source is reused when it is newer
than the checkpoints, TTA=auto's views and kNN's embeddings are cached per fold; the ensembles, stacks and the
TTA=auto choice are recomputed every run (cheap next to training), so a second run after a change measures it.

python benchmarks/level2_gain.py --root /tmp/bake/kaggle_solutions --data ../shared/comps/usps \\
    --answers ../shared/comps/usps_answers.csv [--comp usps] [--size 16] [--epochs 8] [--folds 5] [--tta 8]
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from solver.base.errors import SolverError, run_cli  # noqa: E402
from solver.competition.contract import Competition  # noqa: E402
from solver.level2.knn_stage import knn_stage  # noqa: E402
from solver.level2.stages import ensemble_stage, stack_stage, training_frame  # noqa: E402
from solver.predict.run import predict_experiment  # noqa: E402
from solver.runs.source import load_source  # noqa: E402
from solver.train.run import train_experiment  # noqa: E402

MODEL_A, MODEL_B = "a_resnet10t", "b_regnetx"


def competition_yaml(comp: str, target: str, folds: int) -> dict:
    return {
        "name": comp,
        "task": "multiclass",
        "train_csv": "train.csv",
        "test_csv": "test.csv",
        "sample_submission": "sample_submission.csv",
        "train_images": "train",
        "test_images": "test",
        "image_pattern": "{id}.png",
        "id_column": "id",
        "target": target,
        "metric": "accuracy",
        "n_folds": folds,
        "fold_seed": 42,
        "submission": {"format": "label"},
        "holdout_answers": "test_answers.csv",  # scores the benchmark only; never read by training
    }


def experiment_configs(size: int, epochs: int, batch: int) -> dict[str, dict]:
    """Two from-scratch recipes of different design (a plain ResNet; a RegNetX with grouped convolutions), the
    first a curriculum ending in a no-augmentation fine-tune, the second one cosine stage."""
    affine = [{"name": "Affine", "p": 0.8, "scale": [0.9, 1.1], "translate_percent": [-0.08, 0.08], "rotate": [-12, 12]}]
    data = {"image_size": size, "batch_size": batch, "cache_images": True}
    fine_tune = max(1, epochs // 4)
    return {
        MODEL_A: {
            "model": {"name": "resnet10t"},
            "data": data,
            "augment": {"train": affine},
            "train": {
                "lr": 3.0e-3,
                "schedule": {"name": "cosine", "warmup_epochs": 1},
                "stages": [
                    {"epochs": max(1, epochs - fine_tune), "aug_p": 0.8},
                    {"epochs": fine_tune, "aug_p": 0.0, "lr": 3.0e-4, "schedule": {"name": "cosine"}},
                ],
                "ema_decay": 0.99,
                "early_stopping_patience": None,
            },
            "tta": {"augment": [{"name": "Affine", "p": 1.0, "scale": [0.95, 1.05], "translate_percent": [-0.04, 0.04], "rotate": [-6, 6]}]},
            "knn": {"k": 10, "features": ["label_distribution"]},
        },
        MODEL_B: {
            "model": {"name": "regnetx_002"},
            "data": data,
            "augment": {"train": affine},
            "train": {"epochs": epochs, "lr": 4.0e-3, "schedule": {"name": "cosine", "warmup_epochs": 1}, "early_stopping_patience": None},
        },
    }


def level2_configs(tta_source: str) -> dict[str, dict[str, dict]]:
    """tta_source: the TTA source the Caruana ensemble may pick (TTA=auto's when it was written, else TTA-N's)."""
    return {
        "ensembles": {
            "ens_mean": {"inputs": [MODEL_A, MODEL_B], "method": "mean"},
            "ens_caruana": {"inputs": [MODEL_A, tta_source, MODEL_B], "method": "caruana", "iterations": 20},
        },
        "stacks": {
            "stack": {"inputs": [MODEL_A, MODEL_B], "knn": [MODEL_A]},  # the default: logistic or LightGBM by inner CV
            "stack_lgbm": {"inputs": [MODEL_A, MODEL_B], "knn": [MODEL_A], "lgbm": {"model": "lgbm"}},
            "stack_tta": {"inputs": [tta_source, MODEL_B], "knn": [MODEL_A]},  # the best level-1 source in place of the plain one
        },
    }


def write_if_changed(path: Path, content: dict) -> None:
    text = yaml.safe_dump(content, sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def lay_out(root: Path, comp: str, data: Path, answers: Path, args) -> None:
    """<root>/<comp>/ (contract, configs, ensembles, stacks) and <root>/data/<comp>/ (a copy of the data and answers)."""
    if not (data / "train.csv").is_file():
        raise SolverError(f"{data / 'train.csv'} not found: --data must be a Kaggle-format competition folder")
    if not answers.is_file():
        raise SolverError(f"{answers} not found: --answers must be the test answers (id and target columns)")
    data_dir = root / "data" / comp
    if not (data_dir / "train.csv").is_file():
        shutil.copytree(data, data_dir, dirs_exist_ok=True)
    shutil.copyfile(answers, data_dir / "test_answers.csv")
    target = [c for c in pd.read_csv(data / "train.csv", nrows=1).columns if c != "id"][0]
    folder = root / comp
    write_if_changed(folder / "competition.yaml", competition_yaml(comp, target, args.folds))
    for name, cfg in experiment_configs(args.size, args.epochs, args.batch).items():
        write_if_changed(folder / "configs" / f"{name}.yaml", cfg)


def newer_than_folds(exp_dir: Path, source: str) -> bool:
    """A source of the experiment made after every fold's checkpoint (a retrain marks it stale anyway)."""
    score, checkpoints = exp_dir / source / "score.json", list(exp_dir.glob("fold*/best.pt"))
    return score.is_file() and bool(checkpoints) and score.stat().st_mtime > max(p.stat().st_mtime for p in checkpoints)


def run_stages(root: Path, comp: str, tta: int) -> None:
    for exp in (MODEL_A, MODEL_B):
        if train_experiment(root, comp, exp) is None:
            raise SolverError(f"{exp}: not every fold finished")
    if not newer_than_folds(root / "runs" / comp / MODEL_A, f"tta{tta}"):  # TTA-N's random views are not cached: reuse its source
        predict_experiment(root, comp, MODEL_A, tta=tta)
    auto = predict_experiment(root, comp, MODEL_A, tta="auto")  # None: it did not beat the plain CV (the line above says so)
    stale = root / "runs" / comp / MODEL_A / "tta_auto"
    if auto is None and stale.is_dir():  # a TTA=auto source of an earlier run of this benchmark
        shutil.rmtree(stale)
    for kind, configs in level2_configs(auto["source"] if auto else f"{MODEL_A}/tta{tta}").items():
        for name, cfg in configs.items():
            write_if_changed(root / comp / kind / f"{name}.yaml", cfg)
    knn_stage(root, comp, MODEL_A)
    ensemble_stage(root, comp, "ens_mean")
    ensemble_stage(root, comp, "ens_caruana")
    stack_stage(root, comp, "stack")
    stack_stage(root, comp, "stack_lgbm")
    stack_stage(root, comp, "stack_tta")


def sources_of(comp: Competition) -> list[dict]:
    scores = [json.loads(p.read_text()) for p in sorted(comp.runs_dir.rglob("score.json")) if not p.parent.name.startswith("fold")]
    return [s for s in scores if "source" in s and s.get("fold_scores")]


def paired_bootstrap(metric, answers: np.ndarray, a: np.ndarray, b: np.ndarray, draws: int, seed: int = 0) -> tuple[float, float]:
    """Mean and SE of metric(a) - metric(b) over bootstrap resamples of the test rows (the same rows for both)."""
    rng = np.random.default_rng(seed)
    n = len(answers)
    diffs = []
    for _ in range(draws):
        rows = rng.integers(0, n, n)
        diffs.append(metric(answers[rows], a[rows]) - metric(answers[rows], b[rows]))
    return metric(answers, a) - metric(answers, b), float(np.std(diffs, ddof=1))


def gain_table(comp: Competition, draws: int) -> tuple[str, str]:
    """The markdown table (one row per source, best CV first) and the name of the reference single model."""
    scores = sources_of(comp)
    singles = [s for s in scores if s["kind"] == "experiment"]
    if not singles:
        raise SolverError(f"{comp.runs_dir}: no trained experiment to compare with")
    sign = 1 if comp.metric.greater_is_better else -1
    best = max(singles, key=lambda s: sign * s["cv"])  # chosen on CV: the held-out answers never choose
    _, _, train_ids, test_ids = training_frame(comp)
    answers = comp.read_holdout(comp.read_test())
    reference = load_source(comp, best["source"], train_ids, test_ids)
    lines = [
        f"| source ({comp.metric.name}) | kind | CV | held-out | CV - best | SE | held-out - best | SE |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sorted(scores, key=lambda s: -sign * s["cv"]):
        fold_diff = np.asarray(s["fold_scores"]) - np.asarray(best["fold_scores"])
        cv_se = float(fold_diff.std(ddof=1) / np.sqrt(len(fold_diff)))
        test = load_source(comp, s["source"], train_ids, test_ids).test
        held, held_se = paired_bootstrap(comp.metric, answers, test, reference.test, draws)
        holdout = "" if s.get("holdout") is None else f"{s['holdout']:.4f}"
        lines.append(
            f"| {s['source']} | {s['kind']} | {s['cv']:.4f} | {holdout} | {fold_diff.mean():+.4f} | {cv_se:.4f} | {held:+.4f} | {held_se:.4f} |"
        )
    return "\n".join(lines), best["source"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: current folder)")
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-format competition folder (train.csv, test.csv, train/, test/)")
    parser.add_argument("--answers", type=Path, required=True, help="test answers (id, target), used only to score")
    parser.add_argument("--comp", default="usps")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--tta", type=int, default=8)
    parser.add_argument("--draws", type=int, default=500, help="paired bootstrap resamples of the held-out rows")
    parser.add_argument("--table-only", action="store_true", help="print the table of the sources there are; train and compute nothing")
    args = parser.parse_args()
    root = args.root.resolve()
    if not args.table_only:
        lay_out(root, args.comp, args.data.resolve(), args.answers.resolve(), args)
        run_stages(root, args.comp, args.tta)
    comp = Competition.load(root, args.comp)
    table, best = gain_table(comp, args.draws)
    print(f"\n{comp.name}: every source against the best single model on CV ({best}); SE: fold-paired (CV), paired bootstrap (held-out)")
    print(table)


if __name__ == "__main__":
    run_cli(main)
