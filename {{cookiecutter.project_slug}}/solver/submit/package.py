"""Code competitions: a folder to upload as a Kaggle dataset, and the offline inference that runs from it alone.

build/package/<comp>-<source>/      (source exp001 -> digits-exp001; exp001/tta8 -> digits-exp001-tta8)
  solver/               a copy of the solver that made the package: infer.py imports this one, never an installed one
  <comp>/               competition.yaml and the competition's own code (custom metric, submission function)
  models/fold<k>.pt     each fold's best.pt: the weights predict uses (the model or its EMA, whichever validated
                        better) and the image size they were trained at; no optimizer state
  config.yaml           the resolved experiment config: classes, channels, normalization, image size, TTA settings
  package.json          what was packaged: competition, source, folds, TTA views, CV, git SHA, library versions
  infer.py              python infer.py --data <folder with test.csv, test images, sample_submission.csv> --out submission.csv
  infer.ipynb           the same as a Kaggle notebook (attach the dataset, internet off)
  dataset-metadata.json for `kaggle datasets create -p <package> --dir-mode zip`

Supported sources: one experiment (all folds), optionally with its TTA (exp/ttaN). Ensembles, stacks and kNN
sources need several models or LightGBM at inference and are refused. The package is built in a hidden
.partial folder and renamed at the end; an existing package is replaced only with force=True.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

import solver
from solver.base.atomic import promote_dir, write_csv
from solver.base.errors import SolverError
from solver.base.provenance import git_sha
from solver.competition.contract import Competition, read_csv
from solver.competition.images import check_images_exist
from solver.competition.submission_format import build_submission, validate_submission
from solver.config.experiment import ExperimentConfig, load_experiment_config
from solver.config.loader import validate
from solver.nn.data import ImageDataset, build_transform
from solver.nn.inference import predict
from solver.nn.models import architecture_only, create_model
from solver.nn.runtime import default_num_workers, inference_settings, make_loader, resolve_device
from solver.predict.tta import ViewsDataset, predict_tta
from solver.runs.compatibility import config_difference, read_fold_config
from solver.runs.source import BEST_CHECKPOINT, CONFIG_FILE, OOF_FILE, read_config, read_score

MANIFEST = "package.json"
INFER_TEMPLATE = Path(__file__).with_name("offline_infer.py")
USER_PLACEHOLDER = "your-kaggle-username"
TTA_SOURCE = re.compile(r"^(?P<exp>[^/]+)/tta(?P<views>\d+)$")


# ------------------------------------------------------------------------------------------------------------
# building


def parse_source(comp: Competition, source: str) -> tuple[str, int | None]:
    """'exp001' -> ('exp001', None); 'exp001/tta8' -> ('exp001', 8); anything else is refused, saying what is supported."""
    source = source.strip("/")
    source_dir = comp.runs_dir / source
    if not source_dir.is_dir():
        found = sorted(p.parent.parent.name for p in comp.runs_dir.glob("*/fold0/best.pt"))
        untrained = (comp.folder / "configs" / f"{source}.yaml").is_file()
        hint = f"; train it first: make train COMP={comp.name} EXP={source}" if untrained else ""
        raise SolverError(f"source '{source}': {source_dir} does not exist; experiments with checkpoints: {', '.join(found) or 'none'}{hint}")
    kind = (read_score(source_dir) or {}).get("kind")
    match = TTA_SOURCE.match(source)
    if "/" not in source and kind in (None, "experiment"):
        return source, None
    if match and kind in (None, "tta"):
        return match["exp"], int(match["views"])
    kind = "" if kind is None else f" (an {kind})" if kind[0] in "aeiou" else f" (a {kind})"
    raise SolverError(
        f"source '{source}'{kind} cannot be packaged: a package holds one experiment's fold models, "
        f"SOURCE=<exp> or its TTA SOURCE=<exp>/tta<N>; ensembles, stacks and kNN sources are not supported"
    )


def _checkpoints(comp: Competition, exp_dir: Path, source: str) -> list[Path]:
    paths = [exp_dir / f"fold{k}" / BEST_CHECKPOINT for k in range(comp.cfg.n_folds)]
    for k, path in enumerate(paths):
        if not path.is_file():
            raise SolverError(
                f"{path} not found: packaging '{source}' needs the checkpoint of every fold (0..{comp.cfg.n_folds - 1}); "
                f"train it with `make train COMP={comp.name} EXP={exp_dir.name} FOLD={k}`"
            )
    return paths


def _resolved_config(comp: Competition, exp_dir: Path, source_dir: Path, source: str) -> dict:
    """The config the source's predictions were made with (for TTA: with the predict-time tta.* settings)."""
    path = source_dir / CONFIG_FILE
    if not path.is_file():
        make = f"make predict COMP={comp.name} EXP={exp_dir.name}" + (f" TTA={source.rsplit('tta', 1)[1]}" if source_dir != exp_dir else "")
        raise SolverError(f"{path} not found: '{source}' has no joined predictions yet; run `{make}` first")
    resolved = read_config(source_dir)
    for k in range(comp.cfg.n_folds):
        difference = config_difference(resolved, read_fold_config(exp_dir / f"fold{k}"), source, f"fold{k}")
        if difference:
            raise SolverError(f"{exp_dir / f'fold{k}'} was trained with another config than {path} ({difference}); predict '{source}' again first")
    # The checkpoints hold every weight: neither the start weights file (model.weights) nor timm's pretrained
    # weights are needed, and nothing is downloaded at inference.
    resolved["config"]["model"].update(weights=None, pretrained=False)
    # Training resolved num_workers: auto into its own machine's number; the machine that runs infer.py resolves it again.
    resolved["config"]["data"]["num_workers"] = _num_workers_as_written(comp, exp_dir.name, resolved.get("overrides") or [])
    return resolved


def _num_workers_as_written(comp: Competition, exp_name: str, overrides: list[str]) -> int | str:
    """data.num_workers of the experiment's file (with the run's overrides); auto when that file is gone or is a sweep's."""
    try:
        return load_experiment_config(comp.experiment_path(exp_name), overrides).data.num_workers
    except SolverError:
        return "auto"


def kaggle_slug(text: str) -> str:
    """A Kaggle dataset slug: lowercase letters, digits and hyphens, 6 to 50 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50].strip("-")
    return slug if len(slug) >= 6 else f"{slug}-model"


def notebook(package_slug: str, data_slug: str) -> dict:
    """infer.ipynb (nbformat 4): the paths can be overridden by environment variables to run it elsewhere."""

    def cell(kind: str, text: str) -> dict:
        lines = text.strip("\n").splitlines(keepends=True)
        if kind == "markdown":
            return {"cell_type": "markdown", "metadata": {}, "source": lines}
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": lines}

    return {
        "cells": [
            cell(
                "markdown",
                f"# Offline inference of {package_slug}\n\nAttach the dataset `{package_slug}` and the competition's data, "
                "turn the internet off, run all cells: `submission.csv` is written to `/kaggle/working`.",
            ),
            cell(
                "code",
                "import os\nimport sys\nfrom pathlib import Path\n\n"
                "# The attached package and the competition's files (both read-only under /kaggle/input).\n"
                f'PACKAGE = Path(os.environ.get("PACKAGE_DIR", "/kaggle/input/{package_slug}"))\n'
                f'DATA = Path(os.environ.get("DATA_DIR", "/kaggle/input/{data_slug}"))\n'
                'OUT = Path(os.environ.get("SUBMISSION", "/kaggle/working/submission.csv"))\n',
            ),
            cell(
                "code",
                "sys.path.insert(0, str(PACKAGE))  # the packaged solver\n"
                "from solver.submit.package import predict_package  # noqa: E402\n\n"
                "predict_package(PACKAGE, DATA, OUT, verbose=True)\n",
            ),
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def default_package_dir(comp: Competition, source: str) -> Path:
    return comp.root / "build" / "package" / f"{comp.name}-{source.strip('/').replace('/', '-')}"


def build_package(comp: Competition, source: str, out_dir: Path | None = None, force: bool = False, user: str | None = None) -> Path:
    """Write the package of `source` to out_dir (default build/package/<comp>-<source>); see the module docstring."""
    source = source.strip("/")
    exp_name, tta_views = parse_source(comp, source)
    exp_dir, source_dir = comp.runs_dir / exp_name, comp.runs_dir / source
    checkpoints = _checkpoints(comp, exp_dir, source)
    resolved = _resolved_config(comp, exp_dir, source_dir, source)
    out_dir = Path(out_dir or default_package_dir(comp, source))
    if out_dir.exists() and not force:
        raise SolverError(f"{out_dir} exists; nothing was overwritten. Rebuild it with --force (make package FORCE=1) or choose --out")
    oof = source_dir / OOF_FILE
    n_train = len(read_csv(oof, "OOF predictions")) if oof.is_file() else len(comp.read_train())  # offsets the TTA seeds of test rows
    score = read_score(source_dir) or {}
    user = user or os.environ.get("KAGGLE_USERNAME") or USER_PLACEHOLDER
    slug = kaggle_slug(f"{comp.name}-{source}")

    partial = out_dir.with_name(f".{out_dir.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by a build that failed
    partial.mkdir(parents=True)
    try:
        skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.partial")
        shutil.copytree(Path(solver.__file__).parent, partial / "solver", ignore=skip)
        shutil.copytree(comp.folder, partial / comp.name, ignore=skip)
        (partial / "models").mkdir()
        models = []
        for k, path in enumerate(checkpoints):
            shutil.copy2(path, partial / "models" / f"fold{k}.pt")
            models.append(f"models/fold{k}.pt")
        (partial / CONFIG_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False))
        manifest = {
            "competition": comp.name,
            "source": source,
            "experiment": exp_name,
            "tta_views": tta_views,
            "models": models,
            "n_train": n_train,
            "metric": score.get("metric"),
            "cv": score.get("cv"),
            "holdout": score.get("holdout"),
            "git_sha": git_sha(comp.root),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "timm": _version("timm")},
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.copy2(INFER_TEMPLATE, partial / "infer.py")
        data_slug = comp.cfg.kaggle_slug or comp.name
        (partial / "infer.ipynb").write_text(json.dumps(notebook(slug, data_slug), indent=1) + "\n")
        title = f"{comp.name} {source} model"[:50]
        metadata = {"title": title if len(title) >= 6 else f"{title} package", "id": f"{user}/{slug}", "licenses": [{"name": "CC0-1.0"}]}
        (partial / "dataset-metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out_dir.exists():
        promote_dir(partial, out_dir)  # force: the old package stays until the new one is complete
    else:
        os.replace(partial, out_dir)
    return out_dir


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def package_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------------------------
# offline inference: runs inside the package, from its own files and the competition's test data only


def load_package(package_dir: Path) -> tuple[dict, dict, ExperimentConfig]:
    package_dir = Path(package_dir)
    path = package_dir / MANIFEST
    if not path.is_file():
        raise SolverError(f"{path} not found: {package_dir} is not a package made by `make package`")
    manifest = json.loads(path.read_text())
    resolved = read_config(package_dir)  # a package is laid out as a source folder
    return manifest, resolved, validate(ExperimentConfig, resolved["config"], str(package_dir / CONFIG_FILE))


def _fold_probabilities(model, image_size: int, paths: list, cfg: ExperimentConfig, resolved: dict, manifest: dict, task: str, device, desc: str):
    """One fold model's test probabilities, exactly as `make predict` (TTA: as `make predict TTA=N`) computes them."""
    mean, std, in_chans = resolved["mean"], resolved["std"], resolved["in_chans"]
    plain = build_transform(cfg, mean, std, train=False, image_size=image_size)
    dataset = ImageDataset(paths, None, plain, None, in_chans)
    views = manifest.get("tta_views")
    amp, channels_last = inference_settings(cfg.train, device)  # the training's autocast and memory format, as `make predict`
    if not views:
        loader = make_loader(dataset, cfg.data.batch_size * 2, shuffle=False, num_workers=cfg.data.num_workers, seed=0, device=device)
        return predict(model, loader, device, task, desc=desc, amp=amp, channels_last=channels_last)[0]
    spec = cfg.tta
    augmented = build_transform(cfg, mean, std, train=True, image_size=image_size, augment=spec.augment)
    # Test rows' view seeds are offset past the training rows, as in `make predict TTA=N`.
    views_ds = ViewsDataset(dataset, plain, augmented, views, spec.seed + manifest["n_train"], spec.include_plain)
    per_batch = max(1, cfg.data.batch_size * 2 // views)
    desc = f"{desc} TTA-{views}"
    return predict_tta(model, views_ds, task, spec.combine, per_batch, device, cfg.data.num_workers, desc=desc, amp=amp, channels_last=channels_last)


def predict_package(
    package_dir: Path, data_dir: Path, out_path: Path, device: str = "auto", probs_path: Path | None = None, verbose: bool = False
) -> Path:
    """Test probabilities averaged over the packaged folds -> a submission validated against data_dir's sample submission."""
    package_dir, data_dir = Path(package_dir).resolve(), Path(data_dir).resolve()
    manifest, resolved, cfg = load_package(package_dir)
    comp = Competition.load(package_dir, manifest["competition"])
    # The data folder comes from the command line; the classes from training (train.csv is not needed).
    comp.cfg = comp.cfg.model_copy(update={"data_dir": str(data_dir), "classes": resolved["classes"]})
    if comp.classes != resolved["classes"]:
        raise SolverError(f"{package_dir / comp.name / 'competition.yaml'}: its target columns differ from the packaged classes; rebuild the package")
    test_df = comp.read_test()
    id_col = comp.cfg.id_column
    # One file per sample, or its channel files (image_channels), as training read them.
    paths = [comp.image_files("test", i) if comp.multi_file_images else comp.image_path("test", i) for i in test_df[id_col]]
    check_images_exist(paths, data_dir / comp.cfg.test_csv, list(test_df[id_col]))
    torch_device = resolve_device(device)
    if cfg.data.num_workers == "auto":
        cfg.data.num_workers = default_num_workers(torch_device)  # this machine's cores, not the training machine's
    spec = architecture_only(cfg.model)  # the checkpoints hold every weight: no download
    if verbose:
        print(f"solver: {solver.__file__}")
        print(
            f"package: {package_dir.name} ({manifest['source']}, {len(manifest['models'])} folds), device {torch_device}, {len(test_df)} test images"
        )
    fold_probs = []
    for k, name in enumerate(manifest["models"]):
        state = torch.load(package_dir / name, map_location="cpu", weights_only=True)
        model = create_model(spec, comp.num_classes, resolved["in_chans"], package_dir)
        model.load_state_dict(state["model"])
        model = model.to(torch_device).eval()
        if cfg.train.channels_last:  # the weights in the memory format the inputs get (inference_settings)
            model = model.to(memory_format=torch.channels_last)
        image_size = state["meta"].get("image_size", cfg.data.image_size)
        fold_probs.append(_fold_probabilities(model, image_size, paths, cfg, resolved, manifest, comp.cfg.task, torch_device, f"fold {k} test"))
    probs = pd.DataFrame(np.mean(fold_probs, axis=0), columns=comp.classes)
    probs.insert(0, id_col, list(test_df[id_col]))
    if probs_path is not None:
        write_csv(probs, Path(probs_path))
    sample = comp.read_sample_submission()
    submission = build_submission(comp, probs, sample)
    validate_submission(submission, sample, comp)
    write_csv(submission, Path(out_path))
    if verbose:
        print(f"submission validated against {data_dir / comp.cfg.sample_submission} and written to {out_path}")
    return Path(out_path)
