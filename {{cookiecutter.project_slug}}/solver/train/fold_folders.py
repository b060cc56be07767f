"""The life of a fold's folder: fold<k>.partial while training, promoted to fold<k> when complete; locks, stale derived sources."""

from __future__ import annotations

import os
from pathlib import Path

from solver.base.atomic import write_yaml
from solver.base.errors import SolverError
from solver.nn import distributed
from solver.runs.compatibility import config_difference, read_fold_config
from solver.runs.source import BEST_CHECKPOINT, CONFIG_FILE, LAST_CHECKPOINT, OOF_FILE, SCORE_FILE, TEST_FILE, read_config
from solver.train.experiment import Experiment


def partial_to_delete(partial: Path, resolved: dict, fresh: bool) -> bool:
    """Whether a fold<k>.partial left by a killed run goes: with FRESH, or when it has no checkpoint to resume from.
    One with a checkpoint of another config holds epochs of training: refused, never deleted silently."""
    if not partial.exists():
        return False
    if fresh or not (partial / LAST_CHECKPOINT).is_file() or not (partial / CONFIG_FILE).is_file():
        return True
    difference = config_difference(resolved, read_fold_config(partial), "now", partial.name)
    if difference:
        raise SolverError(
            f"{partial} is a killed run of another config ({difference}); run again with its config to resume it, "
            f"or FRESH=1 (--fresh) to start that fold over (deletes it)"
        )
    return False


def fold_complete(exp: Experiment, k: int) -> bool:
    """A finished fold: its checkpoint, config and predictions are all there."""
    return all((exp.fold_dir(k) / name).is_file() for name in (BEST_CHECKPOINT, CONFIG_FILE, OOF_FILE, TEST_FILE))


def replacement_in_progress(exp: Experiment, k: int) -> bool:
    """A FRESH retrain killed in fold k: fold<k> still holds the old config, fold<k>.partial a resumable run of this one.
    Running the same config again resumes it, as any killed run resumes."""
    partial = exp.fold_dir(k).with_name(f"fold{k}.partial")
    if not ((partial / LAST_CHECKPOINT).is_file() and (partial / CONFIG_FILE).is_file()):
        return False
    return config_difference(exp.resolved_config(fold=k), read_fold_config(partial)) is None


def check_finished_folds(exp: Experiment, training: list[int], fresh: bool = False) -> None:
    """Before training: a finished fold of another config is replaced only with FRESH (or by resuming the FRESH run
    that was killed while replacing it), and one that will not be retrained must match the config, or the CV mixes two models."""
    current = exp.resolved_config()
    for k in range(exp.n_folds):
        if (k in training and (fresh or replacement_in_progress(exp, k))) or not (exp.fold_dir(k) / CONFIG_FILE).is_file():
            continue
        difference = config_difference(current, read_fold_config(exp.fold_dir(k)))
        if difference and k in training:
            raise SolverError(
                f"{exp.fold_dir(k)} finished with another config ({difference}); FRESH=1 (--fresh) retrains it with this one "
                f"(FRESH=1 FOLD={k}: only this fold) "
                f"(the experiment's results stay until every fold is replaced), or RUN=<run folder> (--name) trains this config beside it"
            )
        if difference:
            raise SolverError(
                f"{exp.fold_dir(k)} finished with another config ({difference}); train all folds (no --fold / FOLD=) "
                f"to replace them, or give the new config its own experiment name"
            )


def restore_interrupted_promotion(exp: Experiment, k: int) -> None:
    """promote_dir() died between its two renames: the previous finished fold is in fold<k>.old."""
    old = exp.fold_dir(k).with_name(f"fold{k}.old")
    if old.is_dir() and not exp.fold_dir(k).exists():
        os.replace(old, exp.fold_dir(k))


DERIVED_DIRS = ("tta*", "knn", "pseudo", "full")  # later stages computed from the folds' checkpoints
REMAKE = {"knn": "knn", "pseudo": "pseudo", "full": "train FULL=1"}  # what recomputes each (tta<N>: predict TTA=N)


def mark_derived_stale(exp: Experiment) -> None:
    """After a join: TTA and kNN sources made from checkpoints that were replaced since are kept, marked stale
    (solver.submit.submission.stale_inputs: the leaderboard greys them; submit refuses them and what was made from them)."""
    checkpoints = [exp.fold_dir(k) / BEST_CHECKPOINT for k in range(exp.n_folds)]
    newest = max(p.stat().st_mtime_ns for p in checkpoints if p.is_file())
    for folder in sorted(p for pattern in DERIVED_DIRS for p in exp.dir.glob(pattern)):
        config_path = folder / CONFIG_FILE
        if not config_path.is_file() or config_path.stat().st_mtime_ns > newest:
            continue
        config = read_config(folder)
        if not config.get("stale"):
            target = REMAKE.get(folder.name, f"predict TTA={folder.name[3:]}")
            again = f"make {target} {exp.make_args}"
            config["stale"] = f"the folds of {exp.name} were retrained since it was made; recompute it ({again})"
            write_yaml(config, config_path)
            print(f"{folder}: made from the previous folds, marked stale (kept)")
    submission = exp.dir / "submission.csv"
    if submission.is_file() and submission.stat().st_mtime_ns < newest:  # made from the previous test.csv
        os.replace(submission, exp.dir / "submission.stale.csv")
        print(f"{submission}: made from the previous folds, renamed submission.stale.csv; `make submit` writes a new one")


def fold_lock_holder(exp: Experiment, k: int) -> str | None:
    """The job holding fold k's lock ("pid 123 on host"), or None when it is free."""
    path = exp.dir / f".fold{k}.lock"
    try:
        with distributed.locked(path, f"fold {k} of {exp.dir}", wait=False):
            return None
    except SolverError:
        return path.read_text().strip() or "another process"


def joined_after_every_fold(exp: Experiment) -> bool:
    score = exp.dir / SCORE_FILE
    fold_oofs = [exp.fold_dir(k) / OOF_FILE for k in range(exp.n_folds)]
    if not score.is_file() or not all(p.is_file() for p in fold_oofs):
        return False
    return score.stat().st_mtime_ns > max(p.stat().st_mtime_ns for p in fold_oofs)


def finished_folds(exp: Experiment) -> list[int]:
    """Folds with a checkpoint, each checked to come from the current config."""
    done = [k for k in range(exp.n_folds) if (exp.fold_dir(k) / BEST_CHECKPOINT).is_file()]
    for k in range(exp.n_folds):
        if k not in done and exp.fold_dir(k).is_dir():  # its old predictions would join the CV of the others
            raise SolverError(
                f"{exp.fold_dir(k) / BEST_CHECKPOINT} is missing: fold {k} cannot be predicted again; "
                f"retrain that fold: make train {exp.make_args} FOLD={k}"
            )
    if not done:
        raise SolverError(f"{exp.dir}: no fold has a checkpoint (fold<k>/best.pt); run `make train {exp.make_args}` first")
    current = exp.resolved_config()
    for k in done:
        difference = config_difference(current, read_fold_config(exp.fold_dir(k)))
        if difference:
            raise SolverError(f"{exp.fold_dir(k)} was trained with another config ({difference}); predict with the config it was trained with")
    return done
