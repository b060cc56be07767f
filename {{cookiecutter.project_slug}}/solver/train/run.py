"""Training an experiment: each fold into its folder (resumable, one job per fold), then the join."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from solver.base.atomic import promote_dir, write_yaml
from solver.base.errors import SolverError
from solver.nn import distributed
from solver.nn.runtime import resolve_device, seed_everything
from solver.runs.source import BEST_CHECKPOINT, CONFIG_FILE, read_score
from solver.train.experiment import Experiment, build_model, eval_transform, fold_datasets, load_experiment, train_transform
from solver.train.fold_folders import (
    check_finished_folds,
    fold_complete,
    fold_lock_holder,
    joined_after_every_fold,
    mark_derived_stale,
    partial_to_delete,
    replacement_in_progress,
    restore_interrupted_promotion,
)
from solver.train.loop import Trainer, fit
from solver.train.predictions import aggregate, predict_fold


def train_fold(exp: Experiment, k: int, fresh: bool = False, device: torch.device | None = None) -> dict:
    """Train fold k into fold<k>.partial, predict its OOF and test rows, and promote it to fold<k>.

    Under torchrun every rank runs this; rank 0 alone touches the files. Fold jobs may run side by side
    (`--fold 0` and `--fold 1` at once): a second job on the same fold fails at once instead of clobbering it.
    """
    if k not in range(exp.n_folds):
        raise SolverError(f"fold {k} does not exist; {exp.comp.name} has folds 0..{exp.n_folds - 1}")
    device = device or resolve_device(exp.cfg.train.device)
    if not distributed.is_main():
        return _train_fold(exp, k, fresh, device)
    with distributed.locked(exp.dir / f".fold{k}.lock", f"fold {k} of {exp.dir}", wait=False):
        return _train_fold(exp, k, fresh, device)


def _train_fold(exp: Experiment, k: int, fresh: bool, device: torch.device) -> dict:
    cfg, comp = exp.cfg, exp.comp
    main = distributed.is_main()
    seed = cfg.train.seed + k
    seed_everything(seed, cfg.train.deterministic)
    partial = exp.fold_dir(k).with_name(f"fold{k}.partial")
    resolved = exp.resolved_config(fold=k)
    if main:
        with exp.lock():
            restore_interrupted_promotion(exp, k)
        if partial_to_delete(partial, resolved, fresh):
            shutil.rmtree(partial)  # FRESH, or a run that died before its first checkpoint; it never became a finished fold
        partial.mkdir(parents=True, exist_ok=True)
        write_yaml(resolved, partial / CONFIG_FILE)
    distributed.barrier()  # the other ranks resume from partial/last.pt only once rank 0 has decided to keep it
    train_ds, valid_ds, _, valid_mask = fold_datasets(exp, k)
    model = build_model(exp)
    meta = {"model": cfg.model.name, "num_classes": comp.num_classes, "in_chans": exp.in_chans, "fold": k}
    per_rank = -(-len(train_ds) // distributed.ranks().world_size)  # DistributedSampler's share: the schedule counts its steps
    trainer = Trainer(model, cfg, comp.metric, comp.cfg.task, comp.num_classes, device, per_rank)
    result = fit(trainer, train_ds, valid_ds, exp.y[valid_mask], train_transform(exp), eval_transform(exp), partial, meta, seed, desc=f"fold {k}")
    predict_fold(exp, k, device, partial)
    if main:
        with exp.lock():  # another fold job may be joining the folds right now
            promote_dir(partial, exp.fold_dir(k))  # the experiment's results stay until the join replaces them
    distributed.barrier()
    return result


def train_experiment(
    root: Path, comp_name: str, exp_name: str, folds: list[int] | None = None, overrides=(), fresh: bool = False, run_name: str | None = None
) -> dict | None:
    """Train the folds not finished yet (fresh: every requested fold, from scratch), then join them all.

    A finished experiment is left as it is. A fold of another config, or a killed run of one, is refused unless fresh;
    with fresh, the experiment's results (and its TTA and kNN sources) stay until the new folds are joined.
    """
    exp = load_experiment(root, comp_name, exp_name, overrides, run_name=run_name, training=True)
    folds = folds if folds is not None else exp.cfg.train.folds
    folds = list(range(exp.n_folds)) if folds is None else folds
    unknown = [k for k in folds if k not in range(exp.n_folds)]
    if unknown:
        raise SolverError(f"fold {unknown[0]} does not exist; {comp_name} has folds 0..{exp.n_folds - 1}")
    # Under torchrun: join the process group (a no-op in a plain run); rank 0 alone writes and prints.
    with distributed.session(resolve_device(exp.cfg.train.device)) as device:
        main = distributed.is_main()
        if main:
            with exp.lock():
                for k in range(exp.n_folds):
                    restore_interrupted_promotion(exp, k)
        distributed.barrier()
        check_finished_folds(exp, folds, fresh)
        for k in folds:  # a killed run of another config stops us before any fold trains
            partial_to_delete(exp.fold_dir(k).with_name(f"fold{k}.partial"), exp.resolved_config(fold=k), fresh)
        todo = folds if fresh else [k for k in folds if not fold_complete(exp, k) or replacement_in_progress(exp, k)]
        if not todo and joined_after_every_fold(exp):
            return _already_complete(exp, folds) if main else None
        if main:
            ranks = distributed.ranks().world_size
            done = sorted(set(folds) - set(todo))
            skipped = f" (fold {', '.join(map(str, done))} finished already with this config: FRESH=1 retrains)" if done else ""
            print(
                f"{comp_name}/{exp.name}: {exp.cfg.model.name}, {len(exp.train_df)} train / {len(exp.test_df)} test images, "
                f"{exp.in_chans} channel(s), {exp.comp.num_classes} classes, folds {todo}{skipped}"
                + (f", {ranks} processes ({device.type}) x batch {exp.cfg.data.batch_size}" if ranks > 1 else "")
            )
        _train_folds(exp, todo, fresh, device)
        if not main:
            return None
        with exp.lock():  # fold jobs running side by side: the last one to finish joins them all
            if joined_after_every_fold(exp):  # another job finished after ours and joined them already
                print(f"{exp.dir}: the folds were already joined by another fold job")
                score = read_score(exp.dir)
            else:
                score = aggregate(exp)
            if score is not None:
                mark_derived_stale(exp)
            return score


def _already_complete(exp: Experiment, folds: list[int]) -> dict:
    """Asking for what is done is no error (`make train` twice, a script that trains then predicts): say so, change nothing."""
    score = read_score(exp.dir)
    which = "every fold" if len(folds) == exp.n_folds else f"fold(s) {', '.join(map(str, folds))}"
    print(
        f"{exp.comp.name}/{exp.name} is complete ({which} trained with this config, CV {score['metric']} {score['cv']:.4f}): nothing to train. "
        f"To train it again: FRESH=1 (--fresh; its results stay until every fold is replaced), or RUN=<run folder> (--name) for a new run folder"
    )
    return score


def _train_folds(exp: Experiment, folds: list[int], fresh: bool, device: torch.device) -> None:
    """Train each fold. A fold another job is training (FOLD=k side by side) is left to it and waited for at the end:
    finished there, it counts; if that job died, this one trains it (resuming its checkpoint)."""
    main, started = distributed.is_main(), time.time_ns()
    alone = distributed.ranks().world_size == 1  # under torchrun the ranks train every fold together
    deferred = {k: holder for k in folds if alone and (holder := fold_lock_holder(exp, k))}
    for k in [k for k in folds if k not in deferred] + list(deferred):
        if k in deferred:
            print(f"fold {k}: being trained by another job ({deferred[k]}); waiting for it")
            with distributed.locked(exp.dir / f".fold{k}.lock", f"fold {k} of {exp.dir}"):
                pass
            best = exp.fold_dir(k) / BEST_CHECKPOINT
            if fold_complete(exp, k) and (not fresh or best.stat().st_mtime_ns > started):
                print(f"fold {k}: trained by the other job ({deferred[k]})")
                continue
        start = time.perf_counter()
        result = train_fold(exp, k, fresh, device)
        if main:
            print(f"fold {k}: best {exp.comp.metric.name} {result['score']:.4f} at epoch {result['epoch']} ({time.perf_counter() - start:.0f}s)")
