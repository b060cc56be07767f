"""An experiment across folds: train each fold, predict OOF and test, aggregate, score.

Layout of runs/<comp>/<exp>/:
  fold<k>/        best.pt last.pt metrics.csv tb/ config.yaml oof.csv test.csv (a finished fold)
  fold<k>.partial the fold being trained; renamed to fold<k> only when it is complete, so a failed
                  run never replaces a finished fold
  oof.csv         out-of-fold probabilities for every training row (id, fold, one column per class)
  test.csv        test probabilities averaged over the folds
  score.json      CV score (and held-out score where the competition has answers) for the leaderboard
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from pydantic import BaseModel

from solver import distributed
from solver.atomic import atomic_write, promote_dir, write_csv, write_json, write_yaml
from solver.check_data import check_before_training
from solver.competition import Competition, read_csv
from solver.config import ExperimentConfig, load_experiment_config
from solver.curriculum import check_schedules, lr_plan, steps_per_epoch
from solver.data import (
    ImageDataset,
    build_transform,
    check_augmentations,
    check_image_sizes,
    check_images_exist,
    load_images,
    normalization,
    read_sample,
    seed_transform,
)
from solver.errors import SolverError
from solver.folds import folds_hash, load_folds
from solver.models import architecture_only, check_model_name, create_model
from solver.plots import plot_plan, write_run_plots
from solver.provenance import git_sha
from solver.submission import check_submission_format
from solver.trainer import (
    Trainer,
    default_num_workers,
    fit,
    inference_settings,
    predict_all,
    resolve_device,
    seed_everything,
    shard_loader,
)
from solver.tta import ViewsDataset, embed, predict_tta
from solver.tta_auto import candidate_views, choose_fold_safe, combine, predict_views, view_gains


@dataclass
class Experiment:
    """Everything one experiment needs, checked before any training starts."""

    comp: Competition
    name: str
    cfg: ExperimentConfig
    overrides: tuple[str, ...]
    train_df: pd.DataFrame
    test_df: pd.DataFrame
    y: np.ndarray
    folds: np.ndarray
    train_paths: list[Path | list[Path]]  # per sample: its image file, or its channel files (image_channels)
    test_paths: list[Path | list[Path]]
    in_chans: int
    mean: list[float]
    std: list[float]
    train_images: list[np.ndarray] | None = None
    test_images: list[np.ndarray] | None = None
    kind: str = "experiment"  # the leaderboard's kind of its joined source (pseudo: solver.pseudo)
    # fold k's training dataset -> the one it trains on (solver.pseudo adds the test rows fold k's own model labelled)
    extend_training: Callable[[ImageDataset, int], ImageDataset] | None = None
    extra_config: dict = field(default_factory=dict)  # recorded in every fold's config.yaml and compared like the config
    config_name: str | None = None  # <comp>/configs/<config_name>.yaml, when the run folder (name) is named otherwise

    @property
    def dir(self) -> Path:
        return self.comp.runs_dir / self.name

    @property
    def make_args(self) -> str:
        """The make variables that name this run again in a hint: COMP, EXP, NAME (its own run folder), ARGS."""
        exp = self.config_name or self.name
        args = f"COMP={self.comp.name} EXP={exp}" + (f" NAME={self.name}" if self.name != exp else "")
        return args + (f' ARGS="{" ".join(self.overrides)}"' if self.overrides else "")

    def fold_dir(self, k: int) -> Path:
        return self.dir / f"fold{k}"

    def lock(self):
        """Held while a process changes what several fold jobs share: fold folders being replaced, the joined files."""
        return distributed.locked(self.dir / ".experiment.lock", f"experiment {self.name}")

    @property
    def n_folds(self) -> int:
        return self.comp.cfg.n_folds

    def resolved_config(self, fold: int | None = None) -> dict:
        return {
            "competition": self.comp.name,
            "experiment": self.name,
            "fold": fold,
            "seed": self.cfg.train.seed,
            "git_sha": git_sha(self.comp.root),
            "overrides": list(self.overrides),
            "in_chans": self.in_chans,
            "classes": self.comp.classes,
            "mean": self.mean,
            "std": self.std,
            "folds_hash": folds_hash(self.comp),
            "config": self.cfg.model_dump(mode="json"),
            **self.extra_config,
        }


def load_experiment(
    root: Path, comp_name: str, exp_name: str, overrides=(), load_pixels: bool = True, run_name: str | None = None, training: bool = False
) -> Experiment:
    """run_name: the folder under runs/<comp>/ (default: the experiment's name), e.g. for a sweep with overrides.

    training: the starting weights (pretrained or model.weights) are loaded once here, so a missing cache or file
    fails before any fold folder is written; the later stages load fold checkpoints and never need them."""
    comp = Competition.load(root, comp_name)
    cfg = load_experiment_config(comp.experiment_path(exp_name), overrides)
    check_before_training(comp)  # every CSV, id and image header at once, and a writable runs/: stop before any epoch
    if cfg.data.num_workers == "auto":
        cfg.data.num_workers = default_num_workers(resolve_device(cfg.train.device))
    train_df, test_df = comp.read_train(), comp.read_test()
    check_submission_format(comp)  # fail now, not after hours of training
    y = comp.encode_targets(train_df)
    folds = load_folds(comp)
    id_col = comp.cfg.id_column
    train_paths, test_paths = _sample_paths(comp, "train", train_df[id_col]), _sample_paths(comp, "test", test_df[id_col])
    check_images_exist(train_paths, comp.data_dir / comp.cfg.train_csv, list(train_df[id_col]))
    check_images_exist(test_paths, comp.data_dir / comp.cfg.test_csv, list(test_df[id_col]))
    train_images = test_images = None
    if cfg.data.cache_images and load_pixels:
        train_images = load_images(train_paths, "decode train images")
        test_images = load_images(test_paths, "decode test images")
        channels = {image.shape[2] for image in train_images + test_images}
        if len(channels) > 1:
            raise SolverError(f"images of {comp.name} have different channel counts {sorted(channels)}; convert them to one")
        in_chans = channels.pop()
    else:
        in_chans = read_sample(train_paths[0]).shape[2]
    check_model_name(cfg.model)  # the name, its tag, and that timm has weights for it when pretrained
    model_spec = cfg.model if training else architecture_only(cfg.model)
    model_cfg = create_model(model_spec, comp.num_classes, in_chans, root).pretrained_cfg  # (the pretrained mean/std)
    mean, std = normalization(cfg, in_chans, model_cfg.get("mean", (0.5,)), model_cfg.get("std", (0.25,)))
    build_transform(cfg, mean, std, train=True)  # an unknown augmentation fails before training
    check_augmentations(cfg.augment.train, "augment.train", in_chans, cfg.data.image_size)  # so does one that cannot take N channels
    if cfg.tta.augment is not None:
        check_augmentations(cfg.tta.augment, "tta.augment", in_chans, cfg.data.image_size)
    # ... and one that cannot fit a stage's image size: TTA views run at the size of the best epoch's stage, any of them.
    stage_sizes = [stage.image_size for stage in cfg.train.resolved_stages(cfg.data.image_size)]
    original_hw = (train_images[0] if train_images else read_sample(train_paths[0])).shape[:2]
    for specs, source in ((cfg.augment.train, "augment.train"), (cfg.tta.augment, "tta.augment")):
        if specs:
            check_image_sizes(specs, source, stage_sizes, in_chans, original_hw)
    check_schedules(cfg, int((folds != 0).sum()), comp.metric.greater_is_better)  # so does a bad schedule
    return Experiment(
        comp,
        run_name or exp_name,
        cfg,
        tuple(overrides),
        train_df,
        test_df,
        y,
        folds,
        train_paths,
        test_paths,
        in_chans,
        mean,
        std,
        train_images,
        test_images,
        config_name=exp_name,
    )


def _sample_paths(comp: Competition, split: str, ids) -> list[Path | list[Path]]:
    """One image file per sample, or the list of its channel files for a multi-file competition."""
    if comp.multi_file_images:
        return [comp.image_files(split, i) for i in ids]
    return [comp.image_path(split, i) for i in ids]


def _subset(items, mask):
    return None if items is None else [item for item, keep in zip(items, mask) if keep]


def _fold_datasets(exp: Experiment, k: int):
    """Training, validation and test datasets of fold k; the caller sets their transforms."""
    train_mask, valid_mask = exp.folds != k, exp.folds == k
    eval_tf = build_transform(exp.cfg, exp.mean, exp.std, train=False)
    paths = exp.train_paths
    train_ds = ImageDataset(_subset(paths, train_mask), exp.y[train_mask], eval_tf, _subset(exp.train_images, train_mask), exp.in_chans)
    valid_ds = ImageDataset(_subset(paths, valid_mask), exp.y[valid_mask], eval_tf, _subset(exp.train_images, valid_mask), exp.in_chans)
    test_ds = ImageDataset(exp.test_paths, None, eval_tf, exp.test_images, exp.in_chans)
    if exp.extend_training is not None:
        train_ds = exp.extend_training(train_ds, k)
    return train_ds, valid_ds, test_ds, valid_mask


def _train_transform(exp: Experiment):
    def make(image_size: int, aug_p: float, seed: int):
        return seed_transform(build_transform(exp.cfg, exp.mean, exp.std, train=True, image_size=image_size, aug_p=aug_p), seed)

    return make


def _eval_transform(exp: Experiment):
    return lambda image_size: build_transform(exp.cfg, exp.mean, exp.std, train=False, image_size=image_size)


def _prediction_frame(ids, probs: np.ndarray, classes: list[str], id_col: str, fold: int | None = None) -> pd.DataFrame:
    df = pd.DataFrame(probs, columns=classes)
    if fold is not None:
        df.insert(0, "fold", fold)
    df.insert(0, id_col, list(ids))
    return df


def _predict_fold(exp: Experiment, k: int, device: torch.device, out_dir: Path) -> None:
    """Write the fold's OOF and test probabilities from its best checkpoint (in out_dir: the fold or its .partial)."""
    cfg = exp.cfg
    _, valid_ds, test_ds, valid_mask = _fold_datasets(exp, k)
    model, image_size = _load_best(exp, out_dir, device)
    valid_ds.transform = test_ds.transform = _eval_transform(exp)(image_size)
    id_col, task = exp.comp.cfg.id_column, exp.comp.cfg.task
    # Under torchrun each rank predicts its shard and the rows come back in dataset order.
    batch, workers = cfg.data.batch_size * 2, cfg.data.num_workers
    settings = inference_settings(cfg.train, device)  # autocast dtype and channels_last as in training
    oof, _ = predict_all(model, shard_loader(valid_ds, batch, workers, device), len(valid_ds), device, task, None, f"fold {k} oof", *settings)
    test, _ = predict_all(model, shard_loader(test_ds, batch, workers, device), len(test_ds), device, task, None, f"fold {k} test", *settings)
    if not distributed.is_main():
        return
    write_csv(_prediction_frame(exp.train_df[id_col][valid_mask], oof, exp.comp.classes, id_col, fold=k), out_dir / "oof.csv")
    write_csv(_prediction_frame(exp.test_df[id_col], test, exp.comp.classes, id_col), out_dir / "test.csv")


def _new_model(exp: Experiment, starting_weights: bool = True) -> torch.nn.Module:
    """The experiment's model, with its starting weights (pretrained or model.weights), or only the architecture
    when a checkpoint will overwrite every weight (no cache, no file, no download needed to predict)."""
    spec = exp.cfg.model if starting_weights else architecture_only(exp.cfg.model)
    return create_model(spec, exp.comp.num_classes, exp.in_chans, exp.comp.root)


# Settings that change where or how fast a fold trains, or only how it predicts, not what it learns.
RUNTIME_KEYS = {"train.folds", "train.device", "data.num_workers"}
RUNTIME_PREFIXES = ("tta.", "knn.", "pseudo.", "track.", "tune.")  # pseudo.*: a pseudo-label run records them as pseudo_labels


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def comparable(resolved: dict) -> dict:
    """What must be equal for two folds' predictions to form one CV: config, classes, folds file, channels."""
    flat = {k: v for k, v in _flatten(resolved["config"]).items() if k not in RUNTIME_KEYS and not k.startswith(RUNTIME_PREFIXES)}
    for key in ("classes", "folds_hash", "in_chans", "pseudo_labels"):
        flat[key] = resolved.get(key)
    return flat


def config_difference(a: dict, b: dict, a_name: str = "now", b_name: str = "there") -> str | None:
    """ "train.lr 0.01 (now) vs 0.003 (there), data.batch_size 4 (now) vs 8 (there)" (the first 5 keys, then "and N more"),
    or None when a and b are comparable."""
    a, b = comparable(a), comparable(b)
    differ = sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key) and not _new_key_at_default(key, a, b))
    if not differ:
        return None
    shown = ", ".join(f"{key} {a.get(key)!r} ({a_name}) vs {b.get(key)!r} ({b_name})" for key in differ[:5])
    return shown + (f", and {len(differ) - 5} more" if len(differ) > 5 else "")


_NO_DEFAULT = object()


def _schema_default(key: str):
    """The default of a dotted experiment-config key ("train.sync_bn"), or _NO_DEFAULT."""
    model = ExperimentConfig
    *parents, leaf = key.split(".")
    for part in parents:
        field = model.model_fields.get(part)
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return _NO_DEFAULT
    field = model.model_fields.get(leaf)
    if field is None or field.is_required():
        return _NO_DEFAULT
    default = field.get_default(call_default_factory=True)
    return default.model_dump(mode="json") if isinstance(default, BaseModel) else default


def _new_key_at_default(key: str, a: dict, b: dict) -> bool:
    """A key a newer solver added (absent from one config) at its default changes nothing: folds trained
    before a template update stay valid."""
    if (key in a) == (key in b):
        return False
    value = a[key] if key in a else b[key]
    default = _schema_default(key)
    return default is not _NO_DEFAULT and value == default


def read_fold_config(folder: Path) -> dict:
    return yaml.safe_load((folder / "config.yaml").read_text())


def _partial_to_delete(partial: Path, resolved: dict, fresh: bool) -> bool:
    """Whether a fold<k>.partial left by a killed run goes: with FRESH, or when it has no checkpoint to resume from.
    One with a checkpoint of another config holds epochs of training: refused, never deleted silently."""
    if not partial.exists():
        return False
    if fresh or not (partial / "last.pt").is_file() or not (partial / "config.yaml").is_file():
        return True
    difference = config_difference(resolved, read_fold_config(partial), "now", partial.name)
    if difference:
        raise SolverError(
            f"{partial} is a killed run of another config ({difference}); run again with its config to resume it, "
            f"or FRESH=1 (--fresh) to start that fold over (deletes it)"
        )
    return False


def _fold_complete(exp: Experiment, k: int) -> bool:
    """A finished fold: its checkpoint, config and predictions are all there."""
    return all((exp.fold_dir(k) / name).is_file() for name in ("best.pt", "config.yaml", "oof.csv", "test.csv"))


def _replacement_in_progress(exp: Experiment, k: int) -> bool:
    """A FRESH retrain killed in fold k: fold<k> still holds the old config, fold<k>.partial a resumable run of this one.
    Running the same config again resumes it, as any killed run resumes."""
    partial = exp.fold_dir(k).with_name(f"fold{k}.partial")
    if not ((partial / "last.pt").is_file() and (partial / "config.yaml").is_file()):
        return False
    return config_difference(exp.resolved_config(fold=k), read_fold_config(partial)) is None


def check_finished_folds(exp: Experiment, training: list[int], fresh: bool = False) -> None:
    """Before training: a finished fold of another config is replaced only with FRESH (or by resuming the FRESH run
    that was killed while replacing it), and one that will not be retrained must match the config, or the CV mixes two models."""
    current = exp.resolved_config()
    for k in range(exp.n_folds):
        if (k in training and (fresh or _replacement_in_progress(exp, k))) or not (exp.fold_dir(k) / "config.yaml").is_file():
            continue
        difference = config_difference(current, read_fold_config(exp.fold_dir(k)))
        if difference and k in training:
            raise SolverError(
                f"{exp.fold_dir(k)} finished with another config ({difference}); FRESH=1 (--fresh) retrains it with this one "
                f"(FRESH=1 FOLD={k}: only this fold) "
                f"(the experiment's results stay until every fold is replaced), or NAME=<run> (--name) trains this config beside it"
            )
        if difference:
            raise SolverError(
                f"{exp.fold_dir(k)} finished with another config ({difference}); train all folds (no --fold / FOLD=) "
                f"to replace them, or give the new config its own experiment name"
            )


def _restore_interrupted_promotion(exp: Experiment, k: int) -> None:
    """promote_dir() died between its two renames: the previous finished fold is in fold<k>.old."""
    old = exp.fold_dir(k).with_name(f"fold{k}.old")
    if old.is_dir() and not exp.fold_dir(k).exists():
        os.replace(old, exp.fold_dir(k))


DERIVED_DIRS = ("tta*", "knn", "pseudo", "full")  # later stages computed from the folds' checkpoints
REMAKE = {"knn": "knn", "pseudo": "pseudo", "full": "train FULL=1"}  # what recomputes each (tta<N>: predict TTA=N)


def _mark_derived_stale(exp: Experiment) -> None:
    """After a join: TTA and kNN sources made from checkpoints that were replaced since are kept, marked stale
    (solver.submission.stale_inputs: the leaderboard greys them; submit refuses them and what was made from them)."""
    checkpoints = [exp.fold_dir(k) / "best.pt" for k in range(exp.n_folds)]
    newest = max(p.stat().st_mtime_ns for p in checkpoints if p.is_file())
    for folder in sorted(p for pattern in DERIVED_DIRS for p in exp.dir.glob(pattern)):
        config_path = folder / "config.yaml"
        if not config_path.is_file() or config_path.stat().st_mtime_ns > newest:
            continue
        config = yaml.safe_load(config_path.read_text()) or {}
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
            _restore_interrupted_promotion(exp, k)
        if _partial_to_delete(partial, resolved, fresh):
            shutil.rmtree(partial)  # FRESH, or a run that died before its first checkpoint; it never became a finished fold
        partial.mkdir(parents=True, exist_ok=True)
        write_yaml(resolved, partial / "config.yaml")
    distributed.barrier()  # the other ranks resume from partial/last.pt only once rank 0 has decided to keep it
    train_ds, valid_ds, _, valid_mask = _fold_datasets(exp, k)
    model = _new_model(exp)
    meta = {"model": cfg.model.name, "num_classes": comp.num_classes, "in_chans": exp.in_chans, "fold": k}
    per_rank = -(-len(train_ds) // distributed.ranks().world_size)  # DistributedSampler's share: the schedule counts its steps
    trainer = Trainer(model, cfg, comp.metric, comp.cfg.task, comp.num_classes, device, per_rank)
    result = fit(trainer, train_ds, valid_ds, exp.y[valid_mask], _train_transform(exp), _eval_transform(exp), partial, meta, seed, desc=f"fold {k}")
    _predict_fold(exp, k, device, partial)
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
                    _restore_interrupted_promotion(exp, k)
        distributed.barrier()
        check_finished_folds(exp, folds, fresh)
        for k in folds:  # a killed run of another config stops us before any fold trains
            _partial_to_delete(exp.fold_dir(k).with_name(f"fold{k}.partial"), exp.resolved_config(fold=k), fresh)
        todo = folds if fresh else [k for k in folds if not _fold_complete(exp, k) or _replacement_in_progress(exp, k)]
        if not todo and _joined_after_every_fold(exp):
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
            if _joined_after_every_fold(exp):  # another job finished after ours and joined them already
                print(f"{exp.dir}: the folds were already joined by another fold job")
                score = json.loads((exp.dir / "score.json").read_text())
            else:
                score = aggregate(exp)
            if score is not None:
                _mark_derived_stale(exp)
            return score


def _already_complete(exp: Experiment, folds: list[int]) -> dict:
    """Asking for what is done is no error (`make train` twice, a script that trains then predicts): say so, change nothing."""
    score = json.loads((exp.dir / "score.json").read_text())
    which = "every fold" if len(folds) == exp.n_folds else f"fold(s) {', '.join(map(str, folds))}"
    print(
        f"{exp.comp.name}/{exp.name} is complete ({which} trained with this config, CV {score['metric']} {score['cv']:.4f}): nothing to train. "
        f"To train it again: FRESH=1 (--fresh; its results stay until every fold is replaced), or NAME=<run> (--name) for a new run folder"
    )
    return score


def _train_folds(exp: Experiment, folds: list[int], fresh: bool, device: torch.device) -> None:
    """Train each fold. A fold another job is training (FOLD=k side by side) is left to it and waited for at the end:
    finished there, it counts; if that job died, this one trains it (resuming its checkpoint)."""
    main, started = distributed.is_main(), time.time_ns()
    alone = distributed.ranks().world_size == 1  # under torchrun the ranks train every fold together
    deferred = {k: holder for k in folds if alone and (holder := _fold_lock_holder(exp, k))}
    for k in [k for k in folds if k not in deferred] + list(deferred):
        if k in deferred:
            print(f"fold {k}: being trained by another job ({deferred[k]}); waiting for it")
            with distributed.locked(exp.dir / f".fold{k}.lock", f"fold {k} of {exp.dir}"):
                pass
            best = exp.fold_dir(k) / "best.pt"
            if _fold_complete(exp, k) and (not fresh or best.stat().st_mtime_ns > started):
                print(f"fold {k}: trained by the other job ({deferred[k]})")
                continue
        start = time.perf_counter()
        result = train_fold(exp, k, fresh, device)
        if main:
            print(f"fold {k}: best {exp.comp.metric.name} {result['score']:.4f} at epoch {result['epoch']} ({time.perf_counter() - start:.0f}s)")


def _fold_lock_holder(exp: Experiment, k: int) -> str | None:
    """The job holding fold k's lock ("pid 123 on host"), or None when it is free."""
    path = exp.dir / f".fold{k}.lock"
    try:
        with distributed.locked(path, f"fold {k} of {exp.dir}", wait=False):
            return None
    except SolverError:
        return path.read_text().strip() or "another process"


def _joined_after_every_fold(exp: Experiment) -> bool:
    score = exp.dir / "score.json"
    fold_oofs = [exp.fold_dir(k) / "oof.csv" for k in range(exp.n_folds)]
    if not score.is_file() or not all(p.is_file() for p in fold_oofs):
        return False
    return score.stat().st_mtime_ns > max(p.stat().st_mtime_ns for p in fold_oofs)


def _finished_folds(exp: Experiment) -> list[int]:
    """Folds with a checkpoint, each checked to come from the current config."""
    done = [k for k in range(exp.n_folds) if (exp.fold_dir(k) / "best.pt").is_file()]
    for k in range(exp.n_folds):
        if k not in done and exp.fold_dir(k).is_dir():  # its old predictions would join the CV of the others
            raise SolverError(
                f"{exp.fold_dir(k) / 'best.pt'} is missing: fold {k} cannot be predicted again; "
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


def _load_best(exp: Experiment, folder: Path, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The best model in a fold's folder and the image size it was trained at."""
    state = torch.load(folder / "best.pt", map_location="cpu", weights_only=True)
    model = _new_model(exp, starting_weights=False)
    model.load_state_dict(state["model"])
    model = model.to(device)
    if exp.cfg.train.channels_last:  # the weights in the memory format the inputs get (inference_settings)
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), state["meta"].get("image_size", exp.cfg.data.image_size)


def predict_experiment(
    root: Path, comp_name: str, exp_name: str, overrides=(), run_name: str | None = None, tta: int | str | None = None
) -> dict | None:
    """Recompute every finished fold's OOF and test predictions from its best checkpoint; with tta=N, TTA-N
    predictions go to fold<k>/oof_ttaN.csv and join in <exp>/ttaN/ (a leaderboard row of its own); with
    tta="auto", fixed views chosen on OOF fold-safely (solver/tta_auto.py) make <exp>/tta_auto/ when they beat the plain CV."""
    exp = load_experiment(root, comp_name, exp_name, overrides, run_name=run_name)
    device = resolve_device(exp.cfg.train.device)
    done = _finished_folds(exp)
    if tta == "auto":
        return _predict_auto_tta(exp, done, device)
    for k in done:
        if tta:
            _predict_fold_tta(exp, k, tta, device)
        else:
            _predict_fold(exp, k, device, exp.fold_dir(k))
        print(f"fold {k}: {f'TTA-{tta} ' if tta else ''}predictions written to {exp.fold_dir(k)}")
    with exp.lock():
        score = aggregate(exp, f"tta{tta}" if tta else "")
    if tta and score is not None:
        _say_if_below_plain(exp, score)
    return score


def _say_if_below_plain(exp: Experiment, score: dict) -> None:
    """TTA that does not help is worth one line: the user may not want the source (TTA=auto decides by itself)."""
    plain_path = exp.dir / "score.json"
    if not plain_path.is_file():
        return
    plain, metric = json.loads(plain_path.read_text())["cv"], exp.comp.metric
    if (score["cv"] <= plain) if metric.greater_is_better else (score["cv"] >= plain):
        print(
            f"{exp.comp.name}/{score['source']}: CV {metric.name} {score['cv']:.4f} does not beat the plain {plain:.4f}; "
            "these views do not help this model (TTA=auto chooses views on OOF and writes only what helps)"
        )


def _predict_fold_tta(exp: Experiment, k: int, n_views: int, device: torch.device) -> None:
    cfg, spec = exp.cfg, exp.cfg.tta
    model, image_size = _load_best(exp, exp.fold_dir(k), device)
    _, valid_ds, test_ds, valid_mask = _fold_datasets(exp, k)
    plain = _eval_transform(exp)(image_size)
    augmented = build_transform(cfg, exp.mean, exp.std, train=True, image_size=image_size, augment=spec.augment)
    per_batch = max(1, cfg.data.batch_size * 2 // n_views)
    id_col, task = exp.comp.cfg.id_column, exp.comp.cfg.task
    predictions, settings = {}, inference_settings(cfg.train, device)
    for split, dataset in (("oof", valid_ds), ("test", test_ds)):
        # Test rows get seeds offset past the training rows: no two samples share a view stream.
        offset = 0 if split == "oof" else len(exp.train_df)
        views = ViewsDataset(dataset, plain, augmented, n_views, spec.seed + offset, spec.include_plain)
        desc = f"fold {k} {split} TTA-{n_views}"
        predictions[split] = predict_tta(model, views, task, spec.combine, per_batch, device, cfg.data.num_workers, desc, *settings)
    oof = _prediction_frame(exp.train_df[id_col][valid_mask], predictions["oof"], exp.comp.classes, id_col, fold=k)
    write_csv(oof, exp.fold_dir(k) / f"oof_tta{n_views}.csv")
    write_csv(_prediction_frame(exp.test_df[id_col], predictions["test"], exp.comp.classes, id_col), exp.fold_dir(k) / f"test_tta{n_views}.csv")


def _fold_view_logits(exp: Experiment, k: int, views: list[str], device: torch.device) -> dict[str, np.ndarray]:
    """(V, n, C) logits of fold k's model on its OOF rows and on the test set, cached in fold<k>/tta_views.npz."""
    path = exp.fold_dir(k) / "tta_views.npz"
    if path.is_file():
        with np.load(path) as saved:
            if list(saved["views"]) == views and saved["test"].shape[1] == len(exp.test_df):
                return {"oof": saved["oof"], "test": saved["test"]}
    cfg = exp.cfg
    model, image_size = _load_best(exp, exp.fold_dir(k), device)
    _, valid_ds, test_ds, _ = _fold_datasets(exp, k)
    valid_ds.transform = test_ds.transform = _eval_transform(exp)(image_size)
    (amp, channels_last), batch = inference_settings(cfg.train, device), max(1, cfg.data.batch_size * 2 // len(views))
    arrays = {
        split: predict_views(model, ds, views, batch, device, amp, channels_last, desc=f"fold {k} {split} views")
        for split, ds in (("oof", valid_ds), ("test", test_ds))
    }
    atomic_write(path, lambda tmp: np.savez(open(tmp, "wb"), views=np.array(views), **arrays))
    return arrays


def _predict_auto_tta(exp: Experiment, done: list[int], device: torch.device) -> dict | None:
    comp, task, id_col = exp.comp, exp.comp.cfg.task, exp.comp.cfg.id_column
    if len(done) < exp.n_folds:
        raise SolverError(f"{exp.dir}: TTA=auto chooses views on every fold's OOF; {len(done)}/{exp.n_folds} folds have a checkpoint")
    views = candidate_views(exp.cfg.augment.train)
    oof_logits, test_logits = np.zeros((len(views), len(exp.y), comp.num_classes)), {}
    for k in done:
        arrays = _fold_view_logits(exp, k, views, device)
        oof_logits[:, exp.folds == k], test_logits[k] = arrays["oof"], arrays["test"]
    subsets = choose_fold_safe(oof_logits, exp.y, exp.folds, comp.metric, task)
    oof = np.zeros((len(exp.y), comp.num_classes))
    for k in done:
        oof[exp.folds == k] = combine(oof_logits[:, exp.folds == k], subsets[k], task)
    gains = view_gains(oof_logits, exp.y, comp.metric, task, views)
    print(f"OOF {comp.metric.name} gain per view (alone / averaged with the identity): ")
    print("  " + ", ".join(f"{v} {g['alone']:+.4f} / {g['with_identity']:+.4f}" for v, g in gains.items()))
    print("views per fold (chosen on the other folds): " + "; ".join(f"fold {k}: {'+'.join(views[v] for v in s)}" for k, s in subsets.items()))
    plain, tta = comp.metric(exp.y, combine(oof_logits, [0], task)), comp.metric(exp.y, oof)
    better = tta > plain if comp.metric.greater_is_better else tta < plain
    if not better:
        print(
            f"{comp.name}/{exp.name}/tta_auto not written: its CV {comp.metric.name} {tta:.4f} does not beat the plain {plain:.4f} "
            "(the views chosen on the other folds do not help on each fold's own rows)"
        )
        return None
    for k in done:
        rows = exp.folds == k
        frame = _prediction_frame(exp.train_df[id_col][rows], oof[rows], comp.classes, id_col, fold=k)
        write_csv(frame, exp.fold_dir(k) / "oof_tta_auto.csv")
        test = combine(test_logits[k], subsets[k], task)
        write_csv(_prediction_frame(exp.test_df[id_col], test, comp.classes, id_col), exp.fold_dir(k) / "test_tta_auto.csv")
    with exp.lock():
        score = aggregate(exp, "tta_auto")
    write_json(
        {"views": views, "per_fold": {str(k): [views[v] for v in s] for k, s in subsets.items()}, "gains": gains}, exp.dir / "tta_auto" / "views.json"
    )
    return score


def embeddings(exp: Experiment, device: torch.device | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per fold: pre-logit embeddings of every training row and every test row by that fold's model.

    Cached in fold<k>/embeddings.npz (invalidated with the fold, which a retrain replaces).
    """
    device = device or resolve_device(exp.cfg.train.device)
    train_embeddings, test_embeddings = [], []
    for k in _finished_folds(exp):
        path = exp.fold_dir(k) / "embeddings.npz"
        ids_key = hashlib.sha256("\n".join([*exp.train_df[exp.comp.cfg.id_column], "|", *exp.test_df[exp.comp.cfg.id_column]]).encode()).hexdigest()[
            :16
        ]
        if path.is_file():
            with np.load(path) as saved:
                made_for = str(saved["ids_key"]) if "ids_key" in saved.files else ""
            if made_for != ids_key:  # made for another train/test set: recompute
                path.unlink()
        if not path.is_file():
            model, image_size = _load_best(exp, exp.fold_dir(k), device)
            transform = _eval_transform(exp)(image_size)
            every_train_row = ImageDataset(exp.train_paths, None, transform, exp.train_images, exp.in_chans)
            test_ds = ImageDataset(exp.test_paths, None, transform, exp.test_images, exp.in_chans)
            batch, workers, settings = exp.cfg.data.batch_size * 2, exp.cfg.data.num_workers, inference_settings(exp.cfg.train, device)
            arrays = {
                "ids_key": np.array(ids_key),
                "train": embed(model, every_train_row, batch, device, workers, f"fold {k} embed train", *settings),
                "test": embed(model, test_ds, batch, device, workers, f"fold {k} embed test", *settings),
            }
            atomic_write(path, lambda tmp, arrays=arrays: np.savez(open(tmp, "wb"), **arrays))
        with np.load(path) as saved:
            train_embeddings.append(saved["train"])
            test_embeddings.append(saved["test"])
    if len(train_embeddings) < exp.n_folds:
        raise SolverError(f"{exp.dir}: {len(train_embeddings)}/{exp.n_folds} folds have a checkpoint; kNN features need every fold")
    return train_embeddings, test_embeddings


def aggregate(exp: Experiment, variant: str = "") -> dict | None:
    """Join the folds' OOF, average their test predictions, score; only once every fold is finished.

    variant "" joins fold<k>/oof.csv into <exp>/; variant "tta8" joins fold<k>/oof_tta8.csv into <exp>/tta8/.
    """
    comp, id_col = exp.comp, exp.comp.cfg.id_column
    suffix = f"_{variant}" if variant else ""
    out_dir = exp.dir / variant if variant else exp.dir
    done = [k for k in range(exp.n_folds) if (exp.fold_dir(k) / f"oof{suffix}.csv").is_file()]
    if len(done) < exp.n_folds:
        print(f"{exp.dir}: {len(done)}/{exp.n_folds} folds finished; OOF, test predictions and CV are written when all are")
        return None
    check_same_config(exp)
    train_ids, test_ids = exp.train_df[id_col], exp.test_df[id_col]
    oof = pd.concat([read_csv(exp.fold_dir(k) / f"oof{suffix}.csv", "fold predictions") for k in done])
    if set(oof[id_col]) != set(train_ids) or len(oof) != len(train_ids):
        raise SolverError(f"{exp.dir}: the folds' oof.csv files do not cover train.csv exactly once; retrain (the folds file changed?)")
    oof = oof.set_index(id_col).loc[train_ids].reset_index()
    if (oof["fold"].astype(int).to_numpy() != exp.folds).any():
        raise SolverError(f"{exp.dir}: OOF rows were predicted by other folds than {comp.folds_path} assigns; retrain")
    probs = oof[comp.classes].to_numpy(dtype=float)
    fold_scores = [comp.metric(exp.y[exp.folds == k], probs[exp.folds == k]) for k in done]
    tests = []
    for k in done:
        test = read_csv(exp.fold_dir(k) / f"test{suffix}.csv", "fold predictions")
        if set(test[id_col]) != set(test_ids):
            raise SolverError(f"{exp.fold_dir(k) / 'test.csv'} has other ids than test.csv; run `make predict` to predict the current test set")
        tests.append(test.set_index(id_col).loc[test_ids, comp.classes].to_numpy(dtype=float))  # align by id, not row
    test_probs = np.mean(tests, axis=0)
    test = _prediction_frame(exp.test_df[id_col], test_probs, comp.classes, id_col)
    score = {
        "source": f"{exp.name}/{variant}" if variant else exp.name,
        "kind": "tta" if variant.startswith("tta") else exp.kind,
        "model": exp.cfg.model.name,
        "metric": comp.metric.name,
        "greater_is_better": comp.metric.greater_is_better,
        "cv": comp.metric(exp.y, probs),
        "fold_scores": fold_scores,
        "holdout": score_holdout(comp, exp.test_df, test_probs),
        "git_sha": git_sha(comp.root),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_csv(oof, out_dir / "oof.csv")
    write_csv(test, out_dir / "test.csv")
    write_yaml(exp.resolved_config(), out_dir / "config.yaml")
    write_json(score, out_dir / "score.json")
    curves = [] if variant else [exp.fold_dir(k) for k in done]  # a TTA variant has the same training curves
    threshold = comp.cfg.submission.threshold
    write_run_plots(out_dir, comp.cfg.task, exp.y, probs, comp.classes, threshold, f"{comp.name}/{score['source']}", curves, comp.metric.name)
    holdout = f", held-out {score['holdout']:.4f}" if score["holdout"] is not None else ""
    print(f"{comp.name}/{score['source']}: CV {comp.metric.name} {score['cv']:.4f} (folds {', '.join(f'{s:.4f}' for s in fold_scores)}){holdout}")
    return score


def check_same_config(exp: Experiment) -> None:
    """OOF of folds trained with different settings is no CV score: refuse to join them."""
    first = read_fold_config(exp.fold_dir(0))
    for k in range(1, exp.n_folds):
        difference = config_difference(first, read_fold_config(exp.fold_dir(k)), "fold0", f"fold{k}")
        if difference:
            raise SolverError(f"{exp.dir}: fold{k} was trained with another config than fold0: {difference}; retrain the folds with one config")


def score_holdout(comp: Competition, test_df: pd.DataFrame, test_probs: np.ndarray) -> float | None:
    answers = comp.read_holdout(test_df)
    return None if answers is None else comp.metric(answers, test_probs)


def write_plan(root: Path, comp_name: str, exp_name: str, overrides=()) -> tuple[Path, Path, pd.DataFrame]:
    """The per-step plan of fold 0 (folds differ by a few samples) as CSV and PNG, without training."""
    comp = Competition.load(root, comp_name)
    cfg = load_experiment_config(comp.experiment_path(exp_name), overrides)
    n_train = int((load_folds(comp) != 0).sum())
    n_steps = steps_per_epoch(n_train, cfg.data.batch_size, cfg.train.accumulation_steps)
    plan = lr_plan(cfg, n_steps, comp.metric.greater_is_better)
    out = comp.runs_dir / exp_name
    csv_path = write_csv(plan, out / "plan.csv")
    plateau = any(stage.schedule.name == "plateau" for stage in cfg.train.resolved_stages(cfg.data.image_size))
    note = " (plateau: reductions depend on validation, not shown)" if plateau else ""
    png_path = plot_plan(plan, out / "plan.png", f"{comp_name}/{exp_name}: {n_steps} steps per epoch{note}")
    return csv_path, png_path, plan
