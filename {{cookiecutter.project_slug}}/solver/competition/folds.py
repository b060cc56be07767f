"""One folds file per competition, made once and read by every later stage.

runs/<comp>/folds.csv maps each training id to its validation fold. Every experiment, ensemble and
stack reads the same file, so out-of-fold predictions of different models are comparable and a
second-level model never sees a label its inputs were trained on.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from solver.base.atomic import check_writable, write_csv
from solver.base.errors import SolverError
from solver.competition.contract import Competition, read_csv


def split_folds(y: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold index per row: stratified (multiclass), multilabel-stratified, grouped when groups are given."""
    # Imported here: folds are made once per competition, and sklearn takes about 1.5 s to import in every verb that reads them.
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

    multilabel = y.ndim == 2
    index = np.zeros(len(y))
    if groups is not None and multilabel:
        # No multilabel stratification with groups in sklearn or iterstrat: keep groups intact and balance
        # label frequencies approximately by shuffling the groups.
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(index, groups=groups)
    elif groups is not None:
        splits = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(index, y, groups)
    elif multilabel:
        splits = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(index, y)
    else:
        splits = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(index, y)
    fold = np.full(len(y), -1, dtype=np.int64)
    for k, (_, valid) in enumerate(splits):
        fold[valid] = k
    return fold


def make_folds(comp: Competition) -> pd.DataFrame:
    train = comp.read_train()
    y = comp.encode_targets(train)
    groups = train[comp.cfg.group_column].to_numpy() if comp.cfg.group_column else None
    if groups is not None and len(set(groups)) < comp.cfg.n_folds:
        raise SolverError(f"group column '{comp.cfg.group_column}' has {len(set(groups))} groups, fewer than n_folds={comp.cfg.n_folds}")
    if y.ndim == 1 and np.bincount(y).max() < comp.cfg.n_folds:
        raise SolverError(f"no class has {comp.cfg.n_folds} samples; lower n_folds in {comp.folder / 'competition.yaml'}")
    fold = split_folds(y, comp.cfg.n_folds, comp.cfg.fold_seed, groups)
    return pd.DataFrame({comp.cfg.id_column: train[comp.cfg.id_column].to_numpy(), "fold": fold})


def load_folds(comp: Competition, create: bool = True) -> np.ndarray:
    """Fold index per row of train.csv, making runs/<comp>/folds.csv on first use."""
    path = comp.folds_path
    train = comp.read_train()
    id_col = comp.cfg.id_column
    if not path.is_file():
        if not create:
            raise SolverError(f"{path} not found; run `make folds COMP={comp.name}` first")
        check_writable(path.parent)
        write_csv(make_folds(comp), path)
        print(f"folds: wrote {path} ({comp.cfg.n_folds} folds, seed {comp.cfg.fold_seed})")
    folds = read_csv(path, "folds file")
    if id_col not in folds.columns or "fold" not in folds.columns:
        raise SolverError(f"{path}: expected columns '{id_col}' and 'fold'; delete it to make it again")
    folds["fold"] = _fold_numbers(folds["fold"], path, comp.cfg.n_folds)
    by_id = folds.set_index(id_col)["fold"]
    missing = ~train[id_col].isin(by_id.index)
    if missing.any() or len(by_id) != len(train):
        raise SolverError(
            f"{path} was made for a different train.csv ({int(missing.sum())} train ids not in it, "
            f"{len(by_id)} rows vs {len(train)}); delete it to make it again (every experiment's OOF depends on it)"
        )
    n = by_id.nunique()
    if n != comp.cfg.n_folds:
        raise SolverError(
            f"{path} has {n} folds but {comp.folder / 'competition.yaml'} says n_folds={comp.cfg.n_folds}; delete the file or fix n_folds"
        )
    return by_id.loc[train[id_col]].to_numpy()


def _fold_numbers(text: pd.Series, path, n_folds: int) -> pd.Series:
    """The fold column as int64, each 0..n_folds-1; otherwise a row would train in no fold or in one that never runs."""
    numbers = pd.to_numeric(text, errors="coerce")
    bad = ~numbers.isin(range(n_folds))  # not a number, 1.5, -1, n_folds ...
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = numbers.iloc[row]
        why = "not a fold number" if pd.isna(value) or not float(value).is_integer() else f"outside 0..{n_folds - 1}"
        raise SolverError(
            f"{path}: line {row + 2}: {why}: {text.iloc[row]!r} ({int(bad.sum())} row(s) in all); folds are numbered "
            f"0..{n_folds - 1} (n_folds={n_folds}); fix the file or delete it to make it again"
        )
    return numbers.astype(np.int64)


def folds_hash(comp: Competition) -> str:
    """Identifies the folds file a fold was trained with: OOF from different folds files do not mix."""
    return hashlib.sha256(comp.folds_path.read_bytes()).hexdigest()[:16] if comp.folds_path.is_file() else "none"
