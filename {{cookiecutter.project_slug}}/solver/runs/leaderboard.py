"""One row per experiment (later: ensemble, stack) with its metric and CV score."""

from __future__ import annotations

import pandas as pd

from solver.base.atomic import write_csv
from solver.competition.contract import Competition
from solver.competition.folds import folds_hash
from solver.runs.plots import plot_leaderboard
from solver.runs.source import SCORE_FILE, read_config, read_score, stale_inputs

COLUMNS = ["source", "kind", "model", "metric", "cv", "cv_std", "holdout", "folds", "cv_from", "stale", "time", "git_sha"]
# kind: experiment, tta, knn, pseudo, ensemble, stack, full (a refit on every row: no CV of its own, cv_from names
# the experiment whose CV it relies on; sorted last, never given a made-up CV)


def collect_scores(comp: Competition) -> pd.DataFrame:
    rows, current_folds = [], folds_hash(comp)
    for path in sorted(comp.runs_dir.glob(f"**/{SCORE_FILE}")):  # experiments, their TTA and kNN, ensembles, stacks
        score = read_score(path.parent)
        folds = score.get("fold_scores") or []
        # stale: an input recomputed since, folds retrained since (TTA, kNN), or a CV on another folds file
        stale = stale_inputs(path.parent) is not None or _made_on_other_folds(path.parent, current_folds)
        rows.append({**score, "cv_std": pd.Series(folds).std() if len(folds) > 1 else None, "folds": len(folds), "stale": stale})
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(df):
        df = df.sort_values("cv", ascending=not comp.metric.greater_is_better, kind="stable").reset_index(drop=True)
    return df


def _made_on_other_folds(source_dir, current_folds: str) -> bool:
    """A CV computed on another folds file than the current one does not compare with the others."""
    recorded = read_config(source_dir).get("folds_hash")
    return recorded is not None and recorded != current_folds


def write_leaderboard(comp: Competition) -> tuple[pd.DataFrame, str]:
    df = collect_scores(comp)
    path = comp.runs_dir / "leaderboard.csv"
    write_csv(df, path)
    chart = path.with_suffix(".png")
    if not len(df):
        chart.unlink(missing_ok=True)  # a chart of earlier scores would contradict the empty table
        return df, f"{comp.name}: no finished experiments yet (runs/{comp.name}/<exp>/score.json); wrote an empty {path}"
    shown = df.drop(columns=["git_sha"]).dropna(axis=1, how="all")
    direction = "higher" if comp.metric.greater_is_better else "lower"
    table = shown.to_string(index=False, float_format=lambda v: f"{v:.4f}")
    title = f"{comp.name}: CV ({comp.metric.name}, {direction} is better)"
    plot_leaderboard(df, chart, title, comp.metric.greater_is_better)
    return df, f"leaderboard of {comp.name} ({comp.metric.name}, {direction} is better), written to {path} and {chart.name}\n{table}"
