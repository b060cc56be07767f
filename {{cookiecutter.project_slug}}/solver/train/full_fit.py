"""A final model on every training row: `make train COMP=c EXP=e FULL=1` -> runs/<comp>/<exp>/full/.

The folds choose how long to train: the median of their best epochs (fold<k>/best.pt). The full model trains the
experiment's plan (curriculum, schedule, augmentations) up to that epoch on every training row, with no validation
and no early stopping (a plateau schedule, which follows the validation score, replays the lr the folds had per
epoch), and predicts the test rows once. Having no OOF rows, it has no CV of its own: its score.json
has cv null and `cv_from: <exp>` with the experiment's CV as `cv_borrowed`, which the leaderboard shows as such.
It can be submitted (`make submit SOURCE=<exp>/full`) but not ensembled or stacked (they weigh sources by OOF).

runs/<comp>/<exp>/full/: model.pt, metrics.csv (per-epoch lr and training loss), test.csv, config.yaml, score.json.
It trains in full.partial/ and replaces full/ only when it is done; the folds' later retraining marks it stale.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from solver.base.atomic import promote_dir, save_torch, write_csv
from solver.base.errors import SolverError
from solver.nn import distributed
from solver.nn.curriculum import make_schedule
from solver.nn.data import ImageDataset, build_transform
from solver.nn.inference import predict_all
from solver.nn.runtime import epoch_seed, make_loader, resolve_device, seed_everything, shard_loader
from solver.runs.compatibility import config_difference, read_fold_config
from solver.runs.source import BEST_CHECKPOINT, new_score, read_score, stale_inputs, write_source_files
from solver.train.experiment import Experiment, build_model, eval_transform, load_experiment, train_transform
from solver.train.fold_folders import fold_complete
from solver.train.loop import Trainer
from solver.train.predictions import prediction_frame


def chosen_epochs(exp: Experiment) -> tuple[int, list[int], bool]:
    """(the median of the folds' best epochs, each fold's best epoch, whether most folds' best weights were the EMA's)."""
    states = [torch.load(exp.fold_dir(k) / BEST_CHECKPOINT, map_location="cpu", weights_only=True) for k in range(exp.n_folds)]
    best = [int(state["epoch"]) for state in states]
    ema = sum(state["meta"].get("weights") == "ema" for state in states) * 2 > len(states)
    return max(1, int(np.floor(np.median(best) + 0.5))), best, ema


def check_folds_trained(exp: Experiment, exp_name: str) -> dict:
    """FULL=1 needs every fold trained and joined with this config (they choose the epochs); the experiment's score."""
    comp = exp.comp
    missing = [k for k in range(exp.n_folds) if not fold_complete(exp, k)]
    if missing or read_score(exp.dir) is None:
        which = f"fold {missing[0]} is not trained" if missing else "its folds are not joined (no score.json)"
        raise SolverError(
            f"{exp.dir}: {which}; FULL=1 trains for the epoch count the folds chose: "
            f"make train COMP={comp.name} EXP={exp_name} first (without FULL=1)"
        )
    current = exp.resolved_config()
    for k in range(exp.n_folds):
        difference = config_difference(current, read_fold_config(exp.fold_dir(k)))
        if difference:
            raise SolverError(
                f"{exp.fold_dir(k)} was trained with another config ({difference}); FULL=1 takes the config its folds were trained with"
            )
    return read_score(exp.dir)


def fold_learning_rates(exp: Experiment) -> dict[int, float]:
    """Per epoch, the median learning rate the folds trained it with (fold<k>/metrics.csv)."""
    lrs = pd.concat([pd.read_csv(exp.fold_dir(k) / "metrics.csv", usecols=["epoch", "lr"]) for k in range(exp.n_folds)])
    return lrs.groupby("epoch")["lr"].median().to_dict()


def _replay_plateau(trainer: Trainer, lr: float | None) -> None:
    """A plateau schedule lowers the lr when the validation score stalls, and the full fit has no validation: after
    warmup it takes, each epoch, the lr the folds had (every parameter group scaled alike)."""
    schedule = trainer.schedule
    if lr is None or schedule.spec.name != "plateau" or schedule._warming_up():
        return
    factor = lr / trainer.optimizer.param_groups[0]["lr"]
    for group in trainer.optimizer.param_groups:
        group["lr"] *= factor


def _train_every_row(exp: Experiment, n_epochs: int, device: torch.device, out_dir: Path, desc: str) -> tuple[Trainer, list[dict]]:
    """The experiment's plan up to epoch n_epochs on every training row: the fold loop without validation."""
    cfg, comp = exp.cfg, exp.comp
    seed = cfg.train.seed + exp.n_folds  # a seed no fold trained with
    seed_everything(seed, cfg.train.deterministic)
    rows = ImageDataset(exp.train_paths, exp.y, build_transform(cfg, exp.mean, exp.std, train=False), exp.train_images, exp.in_chans)
    trainer = Trainer(build_model(exp), cfg, comp.metric, comp.cfg.task, comp.num_classes, device, len(rows))
    make_train_transform, history, fold_lrs = train_transform(exp), [], fold_learning_rates(exp)
    for ep in trainer.epochs[:n_epochs]:
        if ep.epoch == trainer.segments[ep.segment].first_epoch or trainer.schedule is None:
            trainer.schedule = make_schedule(trainer.optimizer, trainer.segments[ep.segment], trainer.n_steps, comp.metric.greater_is_better)
        _replay_plateau(trainer, fold_lrs.get(ep.epoch))
        epoch_rng = epoch_seed(seed, ep.epoch)
        seed_everything(epoch_rng, cfg.train.deterministic)
        rows.transform = make_train_transform(ep.image_size, ep.aug_p, epoch_rng)
        loader = make_loader(rows, cfg.data.batch_size, True, cfg.data.num_workers, epoch_rng, device)
        lr, start = trainer.optimizer.param_groups[0]["lr"], time.perf_counter()
        loss = trainer.train_epoch(loader, ep, f"{desc} epoch {ep.epoch}/{n_epochs}")
        trainer.schedule.after_epoch(math.nan, math.nan)  # no validation score: a plateau schedule replays the folds' lr
        history.append(
            {"epoch": ep.epoch, "stage": ep.stage, "image_size": ep.image_size, "lr": lr, "train_loss": loss, "seconds": time.perf_counter() - start}
        )
        write_csv(pd.DataFrame(history), out_dir / "metrics.csv")
        print(f"{desc} epoch {ep.epoch:3d}  size {ep.image_size}  lr {lr:.2e}  train_loss {loss:.4f}")
    return trainer, history


def full_fit(root, comp_name: str, exp_name: str, overrides=(), fresh: bool = False, run_name: str | None = None) -> dict:
    """Train <exp>/full/ on every training row for the epochs the folds chose, and predict the test rows."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun
        raise SolverError("FULL=1 trains one model in one process: run it without GPUS= / torchrun")
    exp = load_experiment(root, comp_name, exp_name, overrides, run_name=run_name, training=True)
    comp, id_col = exp.comp, exp.comp.cfg.id_column
    cv_score = check_folds_trained(exp, exp_name)
    out, partial = exp.dir / "full", exp.dir / "full.partial"
    finished = read_score(out)
    if not fresh and finished is not None and not stale_inputs(out):
        if config_difference(exp.resolved_config(), read_fold_config(out)) is None:
            print(f"{out} is complete (trained after the folds, with this config): nothing to train; FRESH=1 retrains it")
            return finished
    n_epochs, best_epochs, use_ema = chosen_epochs(exp)
    device = resolve_device(exp.cfg.train.device)
    print(f"{comp_name}/{exp.name}/full: {len(exp.train_df)} training rows, {n_epochs} epochs (the median of the folds' best epochs {best_epochs})")
    with distributed.locked(exp.dir / ".full.lock", f"the full fit of {exp.dir}", wait=False):
        shutil.rmtree(partial, ignore_errors=True)  # a killed full fit: it has no checkpoint to resume from
        trainer, history = _train_every_row(exp, n_epochs, device, partial, f"{exp.name}/full")
        model = (trainer.ema.module if use_ema else trainer.model).eval()
        image_size = history[-1]["image_size"]
        save_torch(
            {"model": model.state_dict(), "epoch": n_epochs, "meta": {"image_size": image_size, "weights": "ema" if use_ema else "model"}},
            partial / "model.pt",
        )
        test_ds = ImageDataset(exp.test_paths, None, eval_transform(exp)(image_size), exp.test_images, exp.in_chans)
        loader = shard_loader(test_ds, exp.cfg.data.batch_size * 2, exp.cfg.data.num_workers, device)
        test, _ = predict_all(model, loader, len(test_ds), device, comp.cfg.task, desc="full test")
        extra = {"kind": "full", "cv_from": exp.name, "epochs": n_epochs, "fold_best_epochs": best_epochs}
        # No OOF rows: no CV of its own (cv None); the experiment's CV is shown beside it, never as its own.
        score = new_score(
            comp,
            f"{exp.name}/full",
            "full",
            exp.cfg.model.name,
            None,
            [],
            exp.test_df,
            test,
            cv_from=exp.name,
            cv_borrowed=cv_score["cv"],
            epochs=n_epochs,
        )
        test_df = prediction_frame(exp.test_df[id_col], test, comp.classes, id_col)
        write_source_files(partial, None, test_df, {**exp.resolved_config(), **extra}, score)
        with exp.lock():
            promote_dir(partial, out)
    holdout = f", held-out {score['holdout']:.4f}" if score["holdout"] is not None else ""
    print(f"{comp_name}/{score['source']}: no CV of its own (cv_from {exp.name}: {comp.metric.name} {cv_score['cv']:.4f}){holdout}")
    return score
