"""Stages after training, each a "source" under runs/<comp>/ with oof.csv, test.csv, score.json, config.yaml:

  <exp>/knn    kNN features from the experiment's embeddings (make knn), scored by their label distribution
  <ensemble>   a mean / Caruana-weighted / rank average of sources (make ensemble)
  <stack>      logistic blend or LightGBM (chosen by inner CV) over sources' OOF logits, kNN features and metadata (make lgbm)

Every source was computed on the same folds file; each stage checks that its inputs agree on folds and classes
before it starts, and scores its OOF with the competition's metric for the leaderboard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.competition.folds import load_folds
from solver.config.level2 import EnsembleConfig, StackConfig
from solver.config.loader import read_yaml, validate
from solver.level2.ensemble import caruana_oof_fold_safe, mean_ensemble, rank_average, weighted_average
from solver.level2.knn_stage import load_knn_features
from solver.level2.stack import stack_lgbm
from solver.runs.source import Source, check_sources, load_source, write_source


def load_level2_config(comp: Competition, kind: str, name: str, model):
    """<comp>/ensembles/<name>.yaml or <comp>/stacks/<name>.yaml, validated."""
    path = comp.folder / kind / f"{name}.yaml"
    if not path.is_file():
        found = sorted(p.stem for p in (comp.folder / kind).glob("*.yaml"))
        raise SolverError(f"{path} not found; {kind} of {comp.name}: {', '.join(found) or 'none'}")
    experiment_dir = comp.runs_dir / name
    if any(experiment_dir.glob("fold*")):
        raise SolverError(f"'{name}' is already an experiment's run folder ({experiment_dir}); give the {kind[:-1]} another name")
    return validate(model, read_yaml(path), str(path))


def training_frame(comp: Competition) -> tuple[np.ndarray, np.ndarray, pd.Series, pd.Series]:
    train, test = comp.read_train(), comp.read_test()
    return comp.encode_targets(train), load_folds(comp, create=False), train[comp.cfg.id_column], test[comp.cfg.id_column]


# ----------------------------------------------------------------------------------------------------------
# Ensembles and stacks


def _level2_inputs(root: Path, comp_name: str, kind: str, name: str, model):
    """The stage's config, the competition's labels/folds/ids, and its input sources, checked to be combinable."""
    comp = Competition.load(root, comp_name)
    cfg = load_level2_config(comp, kind, name, model)
    frame = training_frame(comp)
    sources = [load_source(comp, source, frame[2], frame[3]) for source in cfg.inputs]
    check_sources(comp, sources)
    return comp, cfg, frame, sources


def ensemble_stage(root: Path, comp_name: str, name: str) -> dict:
    comp, cfg, (y, folds, train_ids, test_ids), sources = _level2_inputs(root, comp_name, "ensembles", name, EnsembleConfig)
    oofs, tests = [s.oof for s in sources], [s.test for s in sources]
    weights = None
    oof_names, test_names = [f"{s}/oof.csv" for s in cfg.inputs], [f"{s}/test.csv" for s in cfg.inputs]
    if cfg.method == "mean":
        oof, test = mean_ensemble(oofs, oof_names), mean_ensemble(tests, test_names)
    elif cfg.method == "rank":
        oof, test = rank_average(oofs, oof_names), rank_average(tests, test_names)
    else:  # caruana: each fold's OOF blended with weights fitted on the other folds; test with weights from all rows
        oof, weights = caruana_oof_fold_safe(oofs, y, folds, comp.metric, cfg.iterations, names=oof_names)
        test = weighted_average(tests, weights, test_names)
    extra = {"model": f"{cfg.method}({', '.join(cfg.inputs)})", "inputs": cfg.inputs, "method": cfg.method}
    if weights is not None:
        extra["weights"] = dict(zip(cfg.inputs, map(float, weights)))
        print("caruana weights: " + ", ".join(f"{k} {v:.2f}" for k, v in extra["weights"].items()))
    return write_source(comp, name, "ensemble", oof, test, y, folds, extra)


def to_logits(probs: np.ndarray, task: str) -> np.ndarray:
    """Level-1 probabilities as the stack's features: log-probabilities (multiclass) or log-odds (multilabel).
    A linear blend of logits is a product of experts; near 0 and 1, where strong models live, probabilities squash
    the differences a stacker needs."""
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    return np.log(p) if task == "multiclass" else np.log(p / (1 - p))


def true_label_loglik(probs: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Per row (multiclass) or per cell (multilabel): log-probability given to the true label."""
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    if task == "multiclass":
        return np.log(p[np.arange(len(y)), y])
    return np.log(np.where(y == 1, p, 1 - p)).ravel()


def oof_correlations(sources: list[Source], y: np.ndarray, task: str) -> dict[str, float]:
    """Pearson correlation of every pair of inputs' OOF log-likelihood of the truth: near 1, they err on the same rows
    and a stack has little to combine."""
    ll = [true_label_loglik(s.oof, y, task) for s in sources]
    return {f"{a.name} ~ {b.name}": float(np.corrcoef(ll[i], ll[j])[0, 1]) for i, a in enumerate(sources) for j, b in enumerate(sources) if i < j}


def logit_blocks(sources: list[Source], classes: list[str], task: str) -> tuple[list[pd.DataFrame], list[pd.DataFrame], list[list[str]]]:
    """The stack's input blocks, one per source: its OOF and test logits as columns "<source>:<class>", and those column
    names per source (the blend groups: one weight per input)."""
    groups = [[f"{source.name}:{c}" for c in classes] for source in sources]
    X = [pd.DataFrame(to_logits(source.oof, task), columns=columns) for source, columns in zip(sources, groups)]
    X_test = [pd.DataFrame(to_logits(source.test, task), columns=columns) for source, columns in zip(sources, groups)]
    return X, X_test, groups


def stack_stage(root: Path, comp_name: str, name: str) -> dict:
    comp, cfg, (y, folds, train_ids, test_ids), sources = _level2_inputs(root, comp_name, "stacks", name, StackConfig)
    task = comp.cfg.task
    correlations = oof_correlations(sources, y, task)
    if correlations:
        print("OOF correlation of the inputs (log-likelihood of the truth): " + ", ".join(f"{k} {v:.3f}" for k, v in correlations.items()))
    X, X_test, blend_groups = logit_blocks(sources, comp.classes, task)
    knn_columns = []
    for exp_name in cfg.knn:
        oof_features, test_features = load_knn_features(comp, exp_name, train_ids, test_ids)
        X.append(oof_features)
        X_test.append(test_features)
        knn_columns += list(oof_features.columns)
    if cfg.metadata:
        train, test = comp.read_train(), comp.read_test()
        X.append(_metadata(train, cfg.metadata, comp.data_dir / comp.cfg.train_csv))
        X_test.append(_metadata(test, cfg.metadata, comp.data_dir / comp.cfg.test_csv))
    X, X_test = pd.concat(X, axis=1), pd.concat(X_test, axis=1)
    settings = cfg.lgbm
    oof, test, info = stack_lgbm(
        X,
        y,
        folds,
        X_test,
        task,
        comp.num_classes,
        settings,
        optional_columns=knn_columns,
        blend_groups=blend_groups,
        metric=comp.metric if task == "multiclass" else None,
    )
    print("stack model per fold (inner CV): " + "; ".join(map(str, info["models"])))
    if info["knn_gain"] is not None:
        print(f"kNN block: saves {info['knn_gain']:+.4f} inner-CV log loss (mean over fold models; <= 0: it does not help)")
    importance = pd.Series(info["feature_importance"], index=X.columns).sort_values(ascending=False)
    if importance.iloc[0] > 0:
        print("top LightGBM features by gain: " + ", ".join(f"{k} {v:.0f}" for k, v in importance.head(8).items()))
    extra = {
        "model": f"stack({len(X.columns)} features)",
        "inputs": cfg.inputs,
        "knn": cfg.knn,
        "metadata": cfg.metadata,
        "models": info["models"],
        "best_rounds": info["best_rounds"],
        "knn_gain": info["knn_gain"],
        "oof_correlation": correlations,
        "lgbm": cfg.lgbm.model_dump(),
    }
    return write_source(comp, name, "stack", oof, test, y, folds, extra)


def _metadata(df: pd.DataFrame, columns: list[str], path: Path) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SolverError(f"{path}: metadata column(s) {missing} not found; columns found: {', '.join(df.columns)}")
    values = df[columns].apply(pd.to_numeric, errors="coerce")
    bad = [c for c in columns if values[c].isna().all() and df[c].notna().any()]
    if bad:
        raise SolverError(f"{path}: metadata column {bad[0]!r} is not numeric; encode it as numbers first")
    return values.add_prefix("meta:").reset_index(drop=True)
