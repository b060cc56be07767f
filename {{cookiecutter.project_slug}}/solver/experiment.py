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

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from solver.atomic import promote_dir, write_csv, write_json, write_yaml
from solver.competition import Competition
from solver.config import ExperimentConfig, load_experiment_config
from solver.data import ImageDataset, build_transform, check_images_exist, load_images, normalization, read_image
from solver.errors import SolverError
from solver.folds import load_folds
from solver.models import create_model
from solver.trainer import fit, make_loader, predict, resolve_device, seed_everything


def git_sha(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    sha = out.stdout.strip() if out.returncode == 0 else "unknown"
    return f"{sha}-dirty" if dirty and sha != "unknown" else sha


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
    train_paths: list[Path]
    test_paths: list[Path]
    in_chans: int
    mean: list[float]
    std: list[float]
    train_images: list[np.ndarray] | None = None
    test_images: list[np.ndarray] | None = None

    @property
    def dir(self) -> Path:
        return self.comp.runs_dir / self.name

    def fold_dir(self, k: int) -> Path:
        return self.dir / f"fold{k}"

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
            "config": self.cfg.model_dump(mode="json"),
        }


def load_experiment(root: Path, comp_name: str, exp_name: str, overrides=(), load_pixels: bool = True) -> Experiment:
    comp = Competition.load(root, comp_name)
    cfg = load_experiment_config(comp.experiment_path(exp_name), overrides)
    train_df, test_df = comp.read_train(), comp.read_test()
    comp.read_sample_submission()  # fail now, not after hours of training
    y = comp.encode_targets(train_df)
    folds = load_folds(comp)
    id_col = comp.cfg.id_column
    train_paths = [comp.image_path("train", i) for i in train_df[id_col]]
    test_paths = [comp.image_path("test", i) for i in test_df[id_col]]
    check_images_exist(train_paths, comp.data_dir / comp.cfg.train_csv)
    check_images_exist(test_paths, comp.data_dir / comp.cfg.test_csv)
    train_images = test_images = None
    if cfg.data.cache_images and load_pixels:
        train_images = load_images(train_paths, "decode train images")
        test_images = load_images(test_paths, "decode test images")
        channels = {image.shape[2] for image in train_images + test_images}
        if len(channels) > 1:
            raise SolverError(f"images of {comp.name} have different channel counts {sorted(channels)}; convert them to one")
        in_chans = channels.pop()
    else:
        in_chans = read_image(train_paths[0]).shape[2]
    model_cfg = create_model(cfg.model, comp.num_classes, in_chans, root).pretrained_cfg  # also checks the model name and weights
    mean, std = normalization(cfg, in_chans, model_cfg.get("mean", (0.5,)), model_cfg.get("std", (0.25,)))
    build_transform(cfg, mean, std, train=True)  # an unknown augmentation fails before training
    return Experiment(
        comp, exp_name, cfg, tuple(overrides), train_df, test_df, y, folds, train_paths, test_paths, in_chans, mean, std, train_images, test_images
    )


def _subset(items, mask):
    return None if items is None else [item for item, keep in zip(items, mask) if keep]


def _fold_datasets(exp: Experiment, k: int, seed: int):
    train_mask, valid_mask = exp.folds != k, exp.folds == k
    train_tf = build_transform(exp.cfg, exp.mean, exp.std, train=True)
    train_tf.set_random_seed(seed)
    eval_tf = build_transform(exp.cfg, exp.mean, exp.std, train=False)
    paths = np.array(exp.train_paths, dtype=object)
    train_ds = ImageDataset(paths[train_mask], exp.y[train_mask], train_tf, _subset(exp.train_images, train_mask))
    valid_ds = ImageDataset(paths[valid_mask], exp.y[valid_mask], eval_tf, _subset(exp.train_images, valid_mask))
    test_ds = ImageDataset(exp.test_paths, None, eval_tf, exp.test_images)
    return train_ds, valid_ds, test_ds, valid_mask


def _prediction_frame(ids, probs: np.ndarray, classes: list[str], id_col: str, fold: int | None = None) -> pd.DataFrame:
    df = pd.DataFrame(probs, columns=classes)
    if fold is not None:
        df.insert(0, "fold", fold)
    df.insert(0, id_col, list(ids))
    return df


def _predict_fold(exp: Experiment, k: int, model: torch.nn.Module, device: torch.device, out_dir: Path) -> None:
    """Write the fold's OOF and test probabilities from its best checkpoint."""
    cfg = exp.cfg
    _, valid_ds, test_ds, valid_mask = _fold_datasets(exp, k, cfg.train.seed + k)
    state = torch.load(out_dir / "best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    model.to(device)
    id_col, task = exp.comp.cfg.id_column, exp.comp.cfg.task
    loader_args = dict(batch_size=cfg.data.batch_size * 2, shuffle=False, num_workers=cfg.data.num_workers, seed=0, device=device)
    oof, _ = predict(model, make_loader(valid_ds, **loader_args), device, task, desc=f"fold {k} oof")
    test, _ = predict(model, make_loader(test_ds, **loader_args), device, task, desc=f"fold {k} test")
    write_csv(_prediction_frame(exp.train_df[id_col][valid_mask], oof, exp.comp.classes, id_col, fold=k), out_dir / "oof.csv")
    write_csv(_prediction_frame(exp.test_df[id_col], test, exp.comp.classes, id_col), out_dir / "test.csv")


def _new_model(exp: Experiment) -> torch.nn.Module:
    return create_model(exp.cfg.model, exp.comp.num_classes, exp.in_chans, exp.comp.root)


def train_fold(exp: Experiment, k: int) -> dict:
    cfg, comp = exp.cfg, exp.comp
    if k not in range(exp.n_folds):
        raise SolverError(f"fold {k} does not exist; {comp.name} has folds 0..{exp.n_folds - 1}")
    device = resolve_device(cfg.train.device)
    seed = cfg.train.seed + k
    seed_everything(seed, cfg.train.deterministic)
    partial = exp.fold_dir(k).with_name(f"fold{k}.partial")
    if partial.exists():
        shutil.rmtree(partial)  # a run that died earlier; it never became a finished fold
    partial.mkdir(parents=True)
    write_yaml(exp.resolved_config(fold=k), partial / "config.yaml")
    train_ds, valid_ds, _, valid_mask = _fold_datasets(exp, k, seed)
    model = _new_model(exp)
    meta = {"model": cfg.model.name, "num_classes": comp.num_classes, "in_chans": exp.in_chans, "fold": k}
    train_loader = make_loader(train_ds, cfg.data.batch_size, True, cfg.data.num_workers, seed, device)
    valid_loader = make_loader(valid_ds, cfg.data.batch_size * 2, False, cfg.data.num_workers, seed, device)
    result = fit(model, train_loader, valid_loader, exp.y[valid_mask], cfg, comp.metric, comp.cfg.task, partial, device, meta, desc=f"fold {k}")
    _predict_fold(exp, k, model, device, partial)
    promote_dir(partial, exp.fold_dir(k))
    return result


def train_experiment(root: Path, comp_name: str, exp_name: str, folds: list[int] | None = None, overrides=()) -> dict | None:
    exp = load_experiment(root, comp_name, exp_name, overrides)
    folds = folds if folds is not None else exp.cfg.train.folds
    folds = list(range(exp.n_folds)) if folds is None else folds
    print(
        f"{comp_name}/{exp_name}: {exp.cfg.model.name}, {len(exp.train_df)} train / {len(exp.test_df)} test images, "
        f"{exp.in_chans} channel(s), {exp.comp.num_classes} classes, folds {folds}"
    )
    for k in folds:
        start = time.perf_counter()
        result = train_fold(exp, k)
        print(f"fold {k}: best {exp.comp.metric.name} {result['score']:.4f} at epoch {result['epoch']} ({time.perf_counter() - start:.0f}s)")
    return aggregate(exp)


def predict_experiment(root: Path, comp_name: str, exp_name: str, overrides=()) -> dict | None:
    """Recompute every finished fold's OOF and test predictions from its best checkpoint."""
    exp = load_experiment(root, comp_name, exp_name, overrides)
    device = resolve_device(exp.cfg.train.device)
    done = [k for k in range(exp.n_folds) if (exp.fold_dir(k) / "best.pt").is_file()]
    if not done:
        raise SolverError(f"{exp.dir}: no fold has a checkpoint (fold<k>/best.pt); run `make train COMP={comp_name} EXP={exp_name}` first")
    for k in done:
        _predict_fold(exp, k, _new_model(exp), device, exp.fold_dir(k))
        print(f"fold {k}: predictions written to {exp.fold_dir(k)}")
    return aggregate(exp)


def aggregate(exp: Experiment) -> dict | None:
    """Join the folds' OOF, average their test predictions, score; only once every fold is finished."""
    comp, id_col = exp.comp, exp.comp.cfg.id_column
    done = [k for k in range(exp.n_folds) if (exp.fold_dir(k) / "oof.csv").is_file()]
    if len(done) < exp.n_folds:
        print(f"{exp.dir}: {len(done)}/{exp.n_folds} folds finished; OOF, test predictions and CV are written when all are")
        return None
    check_same_config(exp)
    oof = pd.concat([pd.read_csv(exp.fold_dir(k) / "oof.csv", dtype={id_col: str}) for k in done])
    oof = oof.set_index(id_col).loc[exp.train_df[id_col]].reset_index()
    probs = oof[comp.classes].to_numpy()
    fold_scores = [comp.metric(exp.y[exp.folds == k], probs[exp.folds == k]) for k in done]
    tests = [pd.read_csv(exp.fold_dir(k) / "test.csv", dtype={id_col: str}) for k in done]
    test_probs = np.mean([t[comp.classes].to_numpy() for t in tests], axis=0)
    test = _prediction_frame(exp.test_df[id_col], test_probs, comp.classes, id_col)
    score = {
        "source": exp.name,
        "kind": "experiment",
        "model": exp.cfg.model.name,
        "metric": comp.metric.name,
        "greater_is_better": comp.metric.greater_is_better,
        "cv": comp.metric(exp.y, probs),
        "fold_scores": fold_scores,
        "holdout": score_holdout(comp, exp.test_df, test_probs),
        "git_sha": git_sha(comp.root),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_csv(oof, exp.dir / "oof.csv")
    write_csv(test, exp.dir / "test.csv")
    write_yaml(exp.resolved_config(), exp.dir / "config.yaml")
    write_json(score, exp.dir / "score.json")
    holdout = f", held-out {score['holdout']:.4f}" if score["holdout"] is not None else ""
    print(f"{comp.name}/{exp.name}: CV {comp.metric.name} {score['cv']:.4f} (folds {', '.join(f'{s:.4f}' for s in fold_scores)}){holdout}")
    return score


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_config(exp: Experiment) -> None:
    """OOF of folds trained with different settings is no CV score: refuse to join them."""
    configs = [_flatten(yaml.safe_load((exp.fold_dir(k) / "config.yaml").read_text())["config"]) for k in range(exp.n_folds)]
    for k, cfg in enumerate(configs[1:], start=1):
        differ = [key for key in configs[0].keys() | cfg.keys() if configs[0].get(key) != cfg.get(key)]
        if differ:
            key = sorted(differ)[0]
            raise SolverError(
                f"{exp.dir}: fold{k} was trained with another config than fold0: {key} {cfg.get(key)!r} vs {configs[0].get(key)!r}"
                f"{f' (and {len(differ) - 1} more)' if len(differ) > 1 else ''}; retrain the folds with one config"
            )


def score_holdout(comp: Competition, test_df: pd.DataFrame, test_probs: np.ndarray) -> float | None:
    answers = comp.read_holdout(test_df)
    return None if answers is None else comp.metric(answers, test_probs)
