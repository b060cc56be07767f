"""Stages after training, each a "source" under runs/<comp>/ with oof.csv, test.csv, score.json, config.yaml:

  <exp>/knn    kNN features from the experiment's embeddings (make knn), scored by their label distribution
  <ensemble>   a mean / Caruana-weighted / rank average of sources (make ensemble)
  <stack>      logistic blend or LightGBM (chosen by inner CV) over sources' OOF logits, kNN features and metadata (make lgbm)

Every source was computed on the same folds file; each stage checks that its inputs agree on folds and classes
before it starts, and scores its OOF with the competition's metric for the leaderboard.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from solver.atomic import write_csv, write_json, write_yaml
from solver.competition import Competition, read_csv
from solver.config import EnsembleConfig, StackConfig, read_yaml, validate
from solver.ensemble import caruana_oof_fold_safe, check_compatible, mean_ensemble, rank_average, weighted_average
from solver.errors import SolverError
from solver.experiment import embeddings, folds_hash, load_experiment, score_holdout
from solver.folds import load_folds
from solver.knn import KnnSettings, NeighbourIndex, fold_safe_knn_features, recall_at_k
from solver.provenance import git_sha
from solver.stacking import StackSettings, stack_lgbm
from solver.submission import files_hash


@dataclass
class Source:
    """A source's OOF and test probabilities (in train.csv / test.csv row order) and where they came from."""

    name: str
    oof: np.ndarray
    test: np.ndarray
    classes: list[str]
    folds_hash: str


def _config_of(folder: Path) -> dict:
    path = folder / "config.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def load_source(comp: Competition, name: str, train_ids: pd.Series, test_ids: pd.Series) -> Source:
    folder = comp.runs_dir / name
    if _config_of(folder).get("kind") == "full":  # solver.full_fit: trained on every row, so no OOF to weigh it by
        raise SolverError(
            f"source '{name}' is a full refit without OOF predictions: ensembles and stacks cannot use it; use '{name.rsplit('/', 1)[0]}'"
        )
    for file_name in ("oof.csv", "test.csv"):
        if not (folder / file_name).is_file():
            raise SolverError(f"source '{name}' has no {file_name} ({folder / file_name}): train all its folds (or run its stage) first")
    config = _config_of(folder)
    classes = config.get("classes") or comp.classes
    id_col = comp.cfg.id_column
    frames = {}
    for split, ids in (("oof", train_ids), ("test", test_ids)):
        df = read_csv(folder / f"{split}.csv", f"{split} predictions of {name}")
        if set(df[id_col]) != set(ids):
            raise SolverError(f"{folder / f'{split}.csv'}: its ids are not those of the competition's current {split} rows; recompute the source")
        missing = [c for c in classes if c not in df.columns]
        if missing:
            raise SolverError(f"{folder / f'{split}.csv'}: no column for class {missing[0]!r}")
        frames[split] = df.set_index(id_col).loc[ids, classes].to_numpy(dtype=float)
    return Source(name, frames["oof"], frames["test"], [str(c) for c in classes], config.get("folds_hash", "unknown"))


def check_sources(comp: Competition, sources: list[Source]) -> None:
    """Sources to combine must share the class list and the folds file, and that must be the competition's current one."""
    check_compatible([s.name for s in sources], [s.classes for s in sources], [s.folds_hash for s in sources])
    if sources[0].classes != comp.classes:
        raise SolverError(f"the sources' class list differs from {comp.name}'s current one; recompute them")
    if sources[0].folds_hash != folds_hash(comp):
        raise SolverError(f"the sources were made with another folds file than {comp.folds_path}; retrain them on the current folds")


def write_source(comp: Competition, name: str, kind: str, oof: np.ndarray, test: np.ndarray, y: np.ndarray, folds: np.ndarray, extra: dict) -> dict:
    """Write oof.csv, test.csv, config.yaml and score.json of a new source; return its score."""
    out = comp.runs_dir / name
    id_col = comp.cfg.id_column
    train, test_df = comp.read_train(), comp.read_test()
    fold_scores = [comp.metric(y[folds == k], oof[folds == k]) for k in range(comp.cfg.n_folds)]
    score = {
        "source": name,
        "kind": kind,
        "model": extra.pop("model", kind),
        "metric": comp.metric.name,
        "greater_is_better": comp.metric.greater_is_better,
        "cv": comp.metric(y, oof),
        "fold_scores": fold_scores,
        "holdout": score_holdout(comp, test_df, test),
        "git_sha": git_sha(comp.root),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        **extra,
    }
    oof_df = pd.DataFrame(oof, columns=comp.classes)
    oof_df.insert(0, "fold", folds)
    oof_df.insert(0, id_col, train[id_col].to_numpy())
    test_out = pd.DataFrame(test, columns=comp.classes)
    test_out.insert(0, id_col, test_df[id_col].to_numpy())
    submission = out / "submission.csv"
    if submission.is_file():  # written from the predictions replaced below: kept, but never mistaken for the new ones
        os.replace(submission, out / "submission.stale.csv")
        print(f"{submission}: made from the previous predictions, renamed submission.stale.csv; `make submit` writes a new one")
    write_csv(oof_df, out / "oof.csv")
    write_csv(test_out, out / "test.csv")
    config = {"kind": kind, "classes": comp.classes, "folds_hash": folds_hash(comp), **{k: v for k, v in extra.items() if k != "inputs"}}
    config["input_hashes"] = input_hashes(comp, extra.get("inputs", []), extra.get("knn", []))
    write_yaml(config, out / "config.yaml")
    write_json(score, out / "score.json")
    holdout = f", held-out {score['holdout']:.4f}" if score["holdout"] is not None else ""
    print(f"{comp.name}/{name}: CV {comp.metric.name} {score['cv']:.4f}{holdout}")
    return score


# ----------------------------------------------------------------------------------------------------------
# kNN features


def input_hashes(comp: Competition, inputs: list[str], knn: list[str]) -> dict[str, str]:
    """What a level-2 source was made from, so a retrained input makes it visibly stale (solver.submission.stale_inputs)."""
    hashes = {name: files_hash([comp.runs_dir / name / "oof.csv", comp.runs_dir / name / "test.csv"]) for name in inputs}
    for name in knn:
        folder = comp.runs_dir / name / "knn"
        hashes[f"{name}/knn"] = files_hash([folder / "features_oof.csv", folder / "features_test.csv"])
    return hashes


def knn_settings(exp_cfg) -> KnnSettings:
    spec = exp_cfg.knn
    return KnnSettings(spec.k, spec.space, spec.M, spec.ef_construction, spec.ef_search, spec.exact_below, tuple(spec.features))


def knn_stage(root: Path, comp_name: str, exp_name: str, overrides=(), run_name: str | None = None) -> dict:
    """Embeddings of every fold model -> fold-safe kNN features -> runs/<comp>/<run_name or exp>/knn/ (features + a source)."""
    exp = load_experiment(root, comp_name, exp_name, overrides, run_name=run_name)
    comp = exp.comp
    settings = knn_settings(exp.cfg)
    train_emb, test_emb = embeddings(exp)
    oof_features, test_features, names = fold_safe_knn_features(train_emb, test_emb, exp.y, exp.folds, comp.num_classes, settings)
    recall = index_recall(train_emb[0][exp.folds != 0], train_emb[0][exp.folds == 0], settings)
    search = "exact search" if recall is None else f"HNSW recall@{settings.k} against exact search on fold 0: {recall:.4f}"
    print(f"{comp.name}/{exp.name}/knn: {len(names)} features; {search}")
    label_columns = [n for n in names if n.startswith("knn_p_")]
    if not label_columns:  # scored as a source by its label distribution
        raise SolverError("knn.features must include label_distribution for the kNN source to be scored; add it")
    out = exp.dir / "knn"
    id_col = comp.cfg.id_column
    for split, ids, features in (("oof", exp.train_df[id_col], oof_features), ("test", exp.test_df[id_col], test_features)):
        frame = pd.DataFrame(features, columns=names)
        frame.insert(0, id_col, ids.to_numpy())
        write_csv(frame, out / f"features_{split}.csv")
    oof_probs = pd.DataFrame(oof_features, columns=names)[label_columns].to_numpy()
    test_probs = pd.DataFrame(test_features, columns=names)[label_columns].to_numpy()
    extra = {
        "model": f"knn({exp.cfg.model.name})",
        "knn": exp.cfg.knn.model_dump(),
        "recall_at_k": recall,
        "exact": recall is None,
    }
    return write_source(comp, f"{exp.name}/knn", "knn", oof_probs, test_probs, exp.y, exp.folds, extra)


def index_recall(index_vectors: np.ndarray, queries: np.ndarray, settings: KnnSettings, max_queries: int = 1000) -> float | None:
    """recall@k of the HNSW index against exact search, on real embeddings (a sample of the queries); None when an
    index of this size uses exact search: then no HNSW index is built just to be measured."""
    if len(index_vectors) < settings.exact_below:
        return None
    rng = np.random.default_rng(0)
    sample = queries[rng.choice(len(queries), min(max_queries, len(queries)), replace=False)]
    return recall_at_k(NeighbourIndex(index_vectors, settings, exact=False), index_vectors, sample, settings.k)


def load_knn_features(comp: Competition, exp_name: str, train_ids: pd.Series, test_ids: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = comp.runs_dir / exp_name / "knn"
    if not (folder / "features_oof.csv").is_file():
        raise SolverError(f"no kNN features for '{exp_name}' ({folder / 'features_oof.csv'}); run `make knn COMP={comp.name} EXP={exp_name}` first")
    if _config_of(folder).get("folds_hash") != folds_hash(comp):
        raise SolverError(f"the kNN features of '{exp_name}' were made with another folds file; run `make knn` again")
    id_col = comp.cfg.id_column
    oof = read_csv(folder / "features_oof.csv", "kNN features").set_index(id_col).loc[train_ids].astype(float)
    test = read_csv(folder / "features_test.csv", "kNN features").set_index(id_col).loc[test_ids].astype(float)
    prefix = exp_name.replace("/", "_") + "_"
    return oof.add_prefix(prefix).reset_index(drop=True), test.add_prefix(prefix).reset_index(drop=True)


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


def stack_stage(root: Path, comp_name: str, name: str) -> dict:
    comp, cfg, (y, folds, train_ids, test_ids), sources = _level2_inputs(root, comp_name, "stacks", name, StackConfig)
    task = comp.cfg.task
    correlations = oof_correlations(sources, y, task)
    if correlations:
        print("OOF correlation of the inputs (log-likelihood of the truth): " + ", ".join(f"{k} {v:.3f}" for k, v in correlations.items()))
    X, X_test, knn_columns, blend_groups = [], [], [], []
    for source in sources:
        columns = [f"{source.name}:{c}" for c in comp.classes]
        blend_groups.append(columns)
        X.append(pd.DataFrame(to_logits(source.oof, task), columns=columns))
        X_test.append(pd.DataFrame(to_logits(source.test, task), columns=columns))
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
    settings = StackSettings(**{**cfg.lgbm.model_dump(), "logistic_c": tuple(cfg.lgbm.logistic_c)})
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
