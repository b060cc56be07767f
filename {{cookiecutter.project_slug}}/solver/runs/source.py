"""A source folder under runs/<comp>/ and its one owner: the file names, reading, scoring, writing, hashes, staleness.

A source is anything with a leaderboard row: an experiment, its TTA, kNN, pseudo-label and full-refit variants, an
ensemble, a stack, an adapted source. Its folder holds
  oof.csv      out-of-fold probabilities for every training row (id, fold, one column per class); none for a full refit
  test.csv     test probabilities
  config.yaml  what made it (the resolved config, or the level-2 inputs with their hashes); `stale:` once its inputs changed
  score.json   CV and per-fold scores, the held-out score where the competition has answers; written last, so a folder
               with a score.json is complete
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from solver.base.atomic import write_csv, write_json, write_yaml
from solver.base.errors import SolverError
from solver.base.provenance import git_sha
from solver.competition.contract import Competition, read_csv
from solver.competition.folds import folds_hash

OOF_FILE, TEST_FILE, CONFIG_FILE, SCORE_FILE = "oof.csv", "test.csv", "config.yaml", "score.json"
KNN_FEATURE_FILES = ("features_oof.csv", "features_test.csv")  # <exp>/knn/: the stack's kNN block (make knn)
# A fold folder of an experiment (<exp>/fold<k>/) holds a source's four files for that fold's rows, plus its checkpoints:
# the best epoch's weights (what predicts and packages) and the last epoch's full state (what a killed run resumes from).
BEST_CHECKPOINT, LAST_CHECKPOINT = "best.pt", "last.pt"


def read_config(folder: Path, required: bool = False) -> dict:
    """A source's (or a fold's) config.yaml; {} when it has none, unless required (then one error naming the file)."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        if required:
            raise SolverError(f"{path} not found: {folder} is incomplete; train or compute it again")
        return {}
    return yaml.safe_load(path.read_text()) or {}


def read_score(folder: Path) -> dict | None:
    """A source's score.json, None when it is not complete."""
    path = folder / SCORE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def new_score(
    comp: Competition, source: str, kind: str, model: str, cv: float | None, fold_scores: list[float], test_df, test_probs, **extra
) -> dict:
    """The score.json of a source: its CV (None for a full refit, which has no OOF rows), the held-out score on the
    competition's answers where it has them, and where it came from."""
    return {
        "source": source,
        "kind": kind,
        "model": model,
        "metric": comp.metric.name,
        "greater_is_better": comp.metric.greater_is_better,
        "cv": cv,
        "fold_scores": fold_scores,
        "holdout": score_holdout(comp, test_df, test_probs),
        "git_sha": git_sha(comp.root),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        **extra,
    }


def write_source_files(out_dir: Path, oof: pd.DataFrame | None, test: pd.DataFrame, config: dict, score: dict) -> None:
    """Write a source's files, score.json last: a killed run never leaves a folder that looks complete."""
    if oof is not None:
        write_csv(oof, out_dir / OOF_FILE)
    write_csv(test, out_dir / TEST_FILE)
    write_yaml(config, out_dir / CONFIG_FILE)
    write_json(score, out_dir / SCORE_FILE)


def say_score(comp: Competition, score: dict, folds: bool = False) -> None:
    """The one line a finished source prints: its CV (with the fold scores) and held-out score."""
    fold_text = f" (folds {', '.join(f'{s:.4f}' for s in score['fold_scores'])})" if folds else ""
    holdout = f", held-out {score['holdout']:.4f}" if score["holdout"] is not None else ""
    print(f"{comp.name}/{score['source']}: CV {comp.metric.name} {score['cv']:.4f}{fold_text}{holdout}")


def files_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes() if Path(path).is_file() else b"missing")
    return digest.hexdigest()[:16]


def _input_files(folder: Path) -> list[Path]:
    """The files a level-2 source reads from one of its inputs: a source's predictions, or an experiment's kNN features."""
    return [folder / name for name in (KNN_FEATURE_FILES if folder.name == "knn" else (OOF_FILE, TEST_FILE))]


def input_hashes(comp: Competition, inputs: list[str], knn: list[str]) -> dict[str, str]:
    """What a level-2 source was made from, so a retrained input makes it visibly stale (stale_inputs)."""
    hashes = {name: files_hash(_input_files(comp.runs_dir / name)) for name in inputs}
    for name in knn:
        hashes[f"{name}/knn"] = files_hash(_input_files(comp.runs_dir / name / "knn"))
    return hashes


def stale_inputs(source_dir: Path) -> str | None:
    """A level-2 source records the hashes of the files it was made from; a changed or missing one makes it stale."""
    config = read_config(source_dir)
    if config.get("stale"):  # a TTA or kNN source whose folds were retrained since (solver.train.fold_folders.mark_derived_stale)
        return str(config["stale"])
    for relative, digest in (config.get("input_hashes") or {}).items():
        if stale_inputs(source_dir.parent / relative):
            return f"its input '{relative}' is stale"
        if files_hash(_input_files(source_dir.parent / relative)) != digest:
            return f"its input '{relative}' changed since it was made"
    return None


def score_holdout(comp: Competition, test_df: pd.DataFrame, test_probs: np.ndarray) -> float | None:
    answers = comp.read_holdout(test_df)
    return None if answers is None else comp.metric(answers, test_probs)


@dataclass
class Source:
    """A source's OOF and test probabilities (in train.csv / test.csv row order) and where they came from."""

    name: str
    oof: np.ndarray
    test: np.ndarray
    classes: list[str]
    folds_hash: str


def load_source(comp: Competition, name: str, train_ids: pd.Series, test_ids: pd.Series) -> Source:
    folder = comp.runs_dir / name
    if read_config(folder).get("kind") == "full":  # solver.train.full_fit: trained on every row, so no OOF to weigh it by
        raise SolverError(
            f"source '{name}' is a full refit without OOF predictions: ensembles and stacks cannot use it; use '{name.rsplit('/', 1)[0]}'"
        )
    for file_name in (OOF_FILE, TEST_FILE):
        if not (folder / file_name).is_file():
            raise SolverError(f"source '{name}' has no {file_name} ({folder / file_name}): train all its folds (or run its stage) first")
    config = read_config(folder)
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
    """Write oof.csv, test.csv, config.yaml and score.json of a new level-2 source; return its score."""
    out = comp.runs_dir / name
    id_col = comp.cfg.id_column
    train, test_df = comp.read_train(), comp.read_test()
    fold_scores = [comp.metric(y[folds == k], oof[folds == k]) for k in range(comp.cfg.n_folds)]
    model = extra.pop("model", kind)
    score = new_score(comp, name, kind, model, comp.metric(y, oof), fold_scores, test_df, test, **extra)
    oof_df = pd.DataFrame(oof, columns=comp.classes)
    oof_df.insert(0, "fold", folds)
    oof_df.insert(0, id_col, train[id_col].to_numpy())
    test_out = pd.DataFrame(test, columns=comp.classes)
    test_out.insert(0, id_col, test_df[id_col].to_numpy())
    submission = out / "submission.csv"
    if submission.is_file():  # written from the predictions replaced below: kept, but never mistaken for the new ones
        os.replace(submission, out / "submission.stale.csv")
        print(f"{submission}: made from the previous predictions, renamed submission.stale.csv; `make submit` writes a new one")
    config = {"kind": kind, "classes": comp.classes, "folds_hash": folds_hash(comp), **{k: v for k, v in extra.items() if k != "inputs"}}
    config["input_hashes"] = input_hashes(comp, extra.get("inputs", []), extra.get("knn", []))
    write_source_files(out, oof_df, test_out, config, score)
    say_score(comp, score)
    return score


def check_compatible(names: list[str], classes: list[list[str]], folds_hashes: list[str]) -> None:
    """Refuse to blend experiments whose columns mean different classes or whose OOF came from different folds.

    Different folds make OOF rows of one experiment predictions of a model that saw those labels in another, so
    any weights or stack fitted on them leak; different class lists silently average unrelated columns.
    """
    if not (len(names) == len(classes) == len(folds_hashes)):
        raise SolverError(
            f"check_compatible: {len(names)} names, {len(classes)} class lists, {len(folds_hashes)} folds hashes; give one each per experiment"
        )
    if not names:
        return
    first, ref = names[0], [str(c) for c in classes[0]]
    for name, cls in zip(names[1:], classes[1:]):
        cls = [str(c) for c in cls]
        if cls == ref:
            continue
        for i, (a, b) in enumerate(zip(ref, cls)):
            if a != b:
                order = " (same classes in a different order)" if sorted(ref) == sorted(cls) else ""
                raise SolverError(
                    f"experiments '{first}' and '{name}' have different classes{order}: class {i} is '{a}' in '{first}' "
                    f"but '{b}' in '{name}'; ensemble only experiments of the same competition and class list"
                )
        longer, shorter = (first, name) if len(ref) > len(cls) else (name, first)
        extra = (ref if len(ref) > len(cls) else cls)[min(len(ref), len(cls))]
        raise SolverError(
            f"experiments '{first}' ({len(ref)} classes) and '{name}' ({len(cls)} classes) have different classes: "
            f"'{longer}' has class '{extra}' that '{shorter}' lacks; ensemble only experiments with the same class list"
        )
    for name, h in zip(names[1:], folds_hashes[1:]):
        if h != folds_hashes[0]:
            raise SolverError(
                f"experiments '{first}' and '{name}' were trained on different folds files (hash {folds_hashes[0]} vs {h}); "
                "their OOF predictions are not comparable and blending them leaks labels: retrain one on the current folds file"
            )
