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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from solver.base.errors import SolverError
from solver.base.provenance import git_sha
from solver.competition.check_data import check_before_training
from solver.competition.contract import Competition
from solver.competition.folds import folds_hash, load_folds
from solver.competition.images import check_images_exist, load_images, read_sample
from solver.competition.submission_format import check_submission_format
from solver.config.experiment import ExperimentConfig, load_experiment_config
from solver.nn import distributed
from solver.nn.curriculum import check_schedules
from solver.nn.data import ImageDataset, build_transform, check_augmentations, check_image_sizes, normalization, seed_transform
from solver.nn.models import architecture_only, check_model_name, create_model, pretrained_config
from solver.nn.runtime import default_num_workers, resolve_device
from solver.runs.source import BEST_CHECKPOINT


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
    kind: str = "experiment"  # the leaderboard's kind of its joined source (pseudo: solver.level2.pseudo)
    # fold k's training dataset -> the one it trains on (solver.level2.pseudo adds the test rows fold k's own model labelled)
    extend_training: Callable[[ImageDataset, int], ImageDataset] | None = None
    extra_config: dict = field(default_factory=dict)  # recorded in every fold's config.yaml and compared like the config
    config_name: str | None = None  # <comp>/configs/<config_name>.yaml, when the run folder (name) is named otherwise

    @property
    def dir(self) -> Path:
        return self.comp.runs_dir / self.name

    @property
    def make_args(self) -> str:
        """The make variables that name this run again in a hint: COMP, EXP, RUN (its own run folder), ARGS."""
        exp = self.config_name or self.name
        args = f"COMP={self.comp.name} EXP={exp}" + (f" RUN={self.name}" if self.name != exp else "")
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
    if training:  # the model with its starting weights, built once to fail early; its pretrained_cfg holds the mean/std
        model_cfg = create_model(cfg.model, comp.num_classes, in_chans, root).pretrained_cfg
    else:  # the stages after training load fold checkpoints: timm's config alone gives the mean/std, no model is built
        model_cfg = pretrained_config(cfg.model)
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


def fold_datasets(exp: Experiment, k: int):
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


def train_transform(exp: Experiment):
    def make(image_size: int, aug_p: float, seed: int):
        return seed_transform(build_transform(exp.cfg, exp.mean, exp.std, train=True, image_size=image_size, aug_p=aug_p), seed)

    return make


def eval_transform(exp: Experiment):
    return lambda image_size: build_transform(exp.cfg, exp.mean, exp.std, train=False, image_size=image_size)


def build_model(exp: Experiment, starting_weights: bool = True) -> torch.nn.Module:
    """The experiment's model, with its starting weights (pretrained or model.weights), or only the architecture
    when a checkpoint will overwrite every weight (no cache, no file, no download needed to predict)."""
    spec = exp.cfg.model if starting_weights else architecture_only(exp.cfg.model)
    return create_model(spec, exp.comp.num_classes, exp.in_chans, exp.comp.root)


def load_best(exp: Experiment, folder: Path, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The best model in a fold's folder and the image size it was trained at."""
    state = torch.load(folder / BEST_CHECKPOINT, map_location="cpu", weights_only=True)
    model = build_model(exp, starting_weights=False)
    model.load_state_dict(state["model"])
    model = model.to(device)
    if exp.cfg.train.channels_last:  # the weights in the memory format the inputs get (inference_settings)
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), state["meta"].get("image_size", exp.cfg.data.image_size)
