"""make knn: fold-safe kNN features from an experiment's embeddings, as a source and as stack features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from solver.base.atomic import write_csv
from solver.base.errors import SolverError
from solver.competition.contract import Competition, read_csv
from solver.competition.folds import folds_hash
from solver.config.experiment import KnnSpec
from solver.level2.knn import NeighbourIndex, fold_safe_knn_features, recall_at_k
from solver.predict.embeddings import embeddings
from solver.runs.source import KNN_FEATURE_FILES, read_config, write_source
from solver.train.experiment import load_experiment


def knn_stage(root: Path, comp_name: str, exp_name: str, overrides=(), run_name: str | None = None) -> dict:
    """Embeddings of every fold model -> fold-safe kNN features -> runs/<comp>/<run_name or exp>/knn/ (features + a source)."""
    exp = load_experiment(root, comp_name, exp_name, overrides, run_name=run_name)
    comp = exp.comp
    settings = exp.cfg.knn
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
    splits = ((exp.train_df[id_col], oof_features), (exp.test_df[id_col], test_features))
    for file_name, (ids, features) in zip(KNN_FEATURE_FILES, splits):
        frame = pd.DataFrame(features, columns=names)
        frame.insert(0, id_col, ids.to_numpy())
        write_csv(frame, out / file_name)
    oof_probs = pd.DataFrame(oof_features, columns=names)[label_columns].to_numpy()
    test_probs = pd.DataFrame(test_features, columns=names)[label_columns].to_numpy()
    extra = {
        "model": f"knn({exp.cfg.model.name})",
        "knn": exp.cfg.knn.model_dump(mode="json"),
        "recall_at_k": recall,
        "exact": recall is None,
    }
    return write_source(comp, f"{exp.name}/knn", "knn", oof_probs, test_probs, exp.y, exp.folds, extra)


def index_recall(index_vectors: np.ndarray, queries: np.ndarray, settings: KnnSpec, max_queries: int = 1000) -> float | None:
    """recall@k of the HNSW index against exact search, on real embeddings (a sample of the queries); None when an
    index of this size uses exact search: then no HNSW index is built just to be measured."""
    if len(index_vectors) < settings.exact_below:
        return None
    rng = np.random.default_rng(0)
    sample = queries[rng.choice(len(queries), min(max_queries, len(queries)), replace=False)]
    return recall_at_k(NeighbourIndex(index_vectors, settings, exact=False), index_vectors, sample, settings.k)


def load_knn_features(comp: Competition, exp_name: str, train_ids: pd.Series, test_ids: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = comp.runs_dir / exp_name / "knn"
    oof_path, test_path = (folder / name for name in KNN_FEATURE_FILES)
    if not oof_path.is_file():
        raise SolverError(f"no kNN features for '{exp_name}' ({oof_path}); run `make knn COMP={comp.name} EXP={exp_name}` first")
    if read_config(folder).get("folds_hash") != folds_hash(comp):
        raise SolverError(f"the kNN features of '{exp_name}' were made with another folds file; run `make knn` again")
    id_col = comp.cfg.id_column
    oof = read_csv(oof_path, "kNN features").set_index(id_col).loc[train_ids].astype(float)
    test = read_csv(test_path, "kNN features").set_index(id_col).loc[test_ids].astype(float)
    prefix = exp_name.replace("/", "_") + "_"
    return oof.add_prefix(prefix).reset_index(drop=True), test.add_prefix(prefix).reset_index(drop=True)
