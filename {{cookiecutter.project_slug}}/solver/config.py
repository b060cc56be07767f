"""Typed configuration: the competition contract and experiments.

Two kinds of YAML file, both validated strictly (an unknown key or a wrong type is an error that names
the key and the file):

- `<competition>/competition.yaml` declares where the Kaggle files are, the columns, the task, the metric
  and the submission format (`CompetitionConfig`).
- `<competition>/configs/<experiment>.yaml` holds only what differs from the defaults of
  `ExperimentConfig`; `key=value` overrides (dotted keys, YAML values) apply on top for quick sweeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from solver.errors import SolverError, did_you_mean

Task = Literal["multiclass", "multilabel"]


class _Strict(BaseModel):
    # extra="forbid": a typo in a key must fail loudly instead of silently using a default.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# ----------------------------------------------------------------------------------------------------------
# The competition contract


class SubmissionSpec(_Strict):
    # label:          multiclass, the predicted class in the target column (Kaggle's most common format)
    # probabilities:  multiclass, one probability column per class (log-loss competitions)
    # labels:         multilabel, space-separated label ids in one column (Human Protein Atlas)
    # binary_columns: multilabel, one 0/1 column per label
    format: Literal["label", "probabilities", "labels", "binary_columns"] | None = None
    column: str | None = None  # the prediction column for label/labels; default: the target column
    threshold: float = Field(0.5, gt=0, lt=1)  # multilabel: emit a label when its probability is above this
    function: str | None = None  # custom code in the competition folder, "submission.py:make_submission"


class CompetitionConfig(_Strict):
    name: str
    task: Task
    data_dir: str | None = None  # relative to the repo root; default data/<name>
    train_csv: str = "train.csv"
    test_csv: str = "test.csv"
    sample_submission: str = "sample_submission.csv"
    train_images: str = "train"  # folder under data_dir
    test_images: str = "test"
    image_pattern: str = "{id}.png"  # file name inside the image folder; {id} is the id column's value
    id_column: str = "id"
    # multiclass: one column of labels (strings or integers);
    # multilabel: one column of space-separated label ids, or a list of 0/1 columns, one per label
    target: str | list[str]
    classes: list[str] | None = None  # default: every label seen in train.csv, sorted
    group_column: str | None = None  # rows sharing a group stay in one fold (patient, plate, ...)
    metric: str = "accuracy"  # a name from solver.metrics, or "metric.py:function" in the competition folder
    greater_is_better: bool | None = None  # required for a custom metric only
    n_folds: int = Field(5, ge=2)
    fold_seed: int = 42
    submission: SubmissionSpec = SubmissionSpec()
    holdout_answers: str | None = None  # demo only: test labels used to score, never to train
    kaggle_slug: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _classes_as_strings(cls, data: Any) -> Any:
        # Labels are compared as text everywhere (CSV round trips turn 3 into "3").
        if isinstance(data, dict) and isinstance(data.get("classes"), list):
            data = {**data, "classes": [str(c) for c in data["classes"]]}
        return data

    @model_validator(mode="after")
    def _check_task_fields(self) -> CompetitionConfig:
        if self.task == "multiclass" and isinstance(self.target, list):
            raise ValueError("target: a multiclass competition has one target column, not a list")
        fmt = self.submission.format
        allowed = {"multiclass": ("label", "probabilities"), "multilabel": ("labels", "binary_columns")}[self.task]
        if fmt is not None and fmt not in allowed:
            raise ValueError(f"submission.format: '{fmt}' is not for a {self.task} task; use one of {allowed}")
        return self

    @property
    def submission_format(self) -> str:
        if self.submission.format:
            return self.submission.format
        if self.task == "multiclass":
            return "label"
        return "binary_columns" if isinstance(self.target, list) else "labels"


# ----------------------------------------------------------------------------------------------------------
# Experiments: defaults here, differences in the experiment file


class ModelSpec(_Strict):
    name: str = "resnet18"  # any timm model name
    weights: str | None = None  # local .pth/.pt/.safetensors file; None trains from scratch
    drop_rate: float = Field(0.0, ge=0, lt=1)
    kwargs: dict[str, Any] = {}  # passed to timm.create_model


class DataSpec(_Strict):
    image_size: int = Field(224, gt=0)  # pixels, square
    batch_size: int = Field(32, gt=0)
    num_workers: int = Field(0, ge=0)
    cache_images: bool = False  # decode every image once into memory (small data sets)
    mean: list[float] | None = None  # per channel, in [0, 1]; default: the model's ImageNet statistics
    std: list[float] | None = None


class AugmentSpec(_Strict):
    # albumentations transforms by class name with their arguments, applied after resizing, e.g.
    #   - {name: Affine, p: 0.5, rotate: [-10, 10]}
    train: list[dict[str, Any]] = []


class TrainSpec(_Strict):
    epochs: int = Field(20, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0)  # per batch as configured (no implicit scaling by batch size)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    nesterov: bool = True  # sgd only
    scheduler: Literal["plateau", "cosine", "constant"] = "plateau"
    plateau_patience: int = Field(2, ge=0)  # epochs without improvement of the metric before lr *= factor
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    min_lr: float = Field(1e-6, ge=0)
    early_stopping_patience: int | None = Field(5, ge=1)  # epochs without improvement; None trains all epochs
    seed: int = 42
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    deterministic: bool = True  # same seed, same weights (on the CPU)
    folds: list[int] | None = None  # which folds to train; None trains all


class ExperimentConfig(_Strict):
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    augment: AugmentSpec = AugmentSpec()
    train: TrainSpec = TrainSpec()


# ----------------------------------------------------------------------------------------------------------
# Loading


def read_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SolverError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SolverError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SolverError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys of the (nested) config section at loc, for a did-you-mean hint."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    problems = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}' ({did_you_mean(str(e['loc'][-1]), _fields_at(model, e['loc']))})")
        elif e["type"] == "missing":
            problems.append(f"missing required key '{key}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"key '{key}': {msg} (got {e['input']!r})")
    return f"{source}: " + "; ".join(problems)


def validate(model: type[BaseModel], data: dict[str, Any], source: str):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SolverError(format_validation_error(err, model, source)) from None


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """['train.lr=1e-3', 'model.name=resnet34'] -> {'train': {'lr': 0.001}, 'model': {'name': 'resnet34'}}."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SolverError(f"override '{item}': expected key=value, e.g. train.lr=1e-3")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_competition_config(path: Path) -> CompetitionConfig:
    return validate(CompetitionConfig, read_yaml(path), str(path))


def load_experiment_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    data = read_yaml(path)
    source = str(path)
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        source = f"{path} with overrides {' '.join(overrides)}"
    return validate(ExperimentConfig, data, source)
