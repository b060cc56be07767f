"""The competition contract: <competition>/competition.yaml (CompetitionConfig)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from solver.config.loader import Strict, Task, read_yaml, validate

# ----------------------------------------------------------------------------------------------------------
# The competition contract


class SubmissionSpec(Strict):
    # label:          multiclass, the predicted class in the target column (Kaggle's most common format)
    # probabilities:  multiclass, one probability column per class (log-loss competitions)
    # labels:         multilabel, space-separated label ids in one column (Human Protein Atlas)
    # binary_columns: multilabel, one 0/1 column per label
    format: Literal["label", "probabilities", "labels", "binary_columns"] | None = None
    column: str | None = None  # the prediction column for label/labels; default: the target column
    threshold: float = Field(0.5, gt=0, lt=1)  # multilabel: emit a label when its probability is above this
    function: str | None = None  # custom code in the competition folder, "submission.py:make_submission"


class CompetitionConfig(Strict):
    name: str
    task: Task
    data_dir: str | None = None  # relative to the repo root; default data/<name>
    train_csv: str = "train.csv"
    test_csv: str = "test.csv"
    sample_submission: str = "sample_submission.csv"
    train_images: str = "train"  # folder under data_dir
    test_images: str = "test"
    image_pattern: str = "{id}.png"  # file name inside the image folder; {id} is the id column's value
    # instead of image_pattern: one grayscale file per channel, stacked in this order (Human Protein Atlas),
    # e.g. ["{id}_red.png", "{id}_green.png", "{id}_blue.png", "{id}_yellow.png"]
    image_channels: list[str] | None = None
    id_column: str = "id"
    # multiclass: one column of labels (strings or integers);
    # multilabel: one column of space-separated label ids, or a list of 0/1 columns, one per label
    target: str | list[str]
    classes: list[str] | None = None  # default: every label seen in train.csv, sorted
    group_column: str | None = None  # rows sharing a group stay in one fold (patient, plate, ...)
    metric: str = "accuracy"  # a name from solver.competition.metrics, or "metric.py:function" in the competition folder
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
            bad = [c for c in data["classes"] if isinstance(c, bool | float) or c is None]
            if bad:
                raise ValueError(f"classes: {bad[0]!r} is not a label as written; quote labels like yes, no, 1.5 or null in YAML")
            data = {**data, "classes": [str(c) for c in data["classes"]]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _one_image_layout(cls, data: Any) -> Any:
        if isinstance(data, dict) and "image_channels" in data and "image_pattern" in data:
            raise ValueError("image_pattern and image_channels: set one, not both (image_channels lists one file per channel)")
        return data

    @model_validator(mode="after")
    def _check_task_fields(self) -> CompetitionConfig:
        try:
            self.image_pattern.format(id="x")
        except (KeyError, IndexError, ValueError):
            # (no f-string: its doubled-brace escapes would look like leftover template syntax in the generated repo)
            raise ValueError("image_pattern: '" + self.image_pattern + "' may use only {id}, e.g. '{id}.png'") from None
        if self.image_channels is not None:
            if not self.image_channels:
                raise ValueError("image_channels: list at least one file pattern, e.g. ['{id}_red.png', '{id}_green.png']")
            for i, pattern in enumerate(self.image_channels):
                try:
                    ok = pattern.format(id="x") != pattern.format(id="y")
                except (KeyError, IndexError, ValueError):
                    ok = False
                if not ok:
                    raise ValueError("image_channels[" + str(i) + "]: '" + pattern + "' must contain {id} and no other braces, e.g. '{id}_red.png'")
            if len(set(self.image_channels)) != len(self.image_channels):
                repeated = next(p for p in self.image_channels if self.image_channels.count(p) > 1)
                raise ValueError(f"image_channels: {repeated!r} is listed twice")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            repeated = next(c for c in self.classes if self.classes.count(c) > 1)
            raise ValueError(f"classes: {repeated!r} is listed twice")
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


def load_competition_config(path: Path) -> CompetitionConfig:
    return validate(CompetitionConfig, read_yaml(path), str(path))
