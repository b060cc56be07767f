"""Adaptation files: <competition>/adapt/<name>.yaml (prior shift, head tuning, thresholds)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from solver.config.loader import Strict

# Which keys of AdaptConfig each method reads; any other set key is an error (it would be silently ignored).
ADAPT_KEYS = {
    "prior_shift": {"priors", "calibrate"},
    "head_tuning": {"confidence", "labelled_subset", "init", "epochs", "lr", "weight_decay", "target_weight", "include_train"},
    "thresholds": {"metric", "expected_frequencies", "at_least_one"},
}


class _HeadKeys(Strict):
    """How a head trains, as far as an adapt file sets it (method head_tuning)."""

    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    target_weight: float = Field(1.0, gt=0)  # loss weight of a target row (a training row weighs 1)
    include_train: bool = True  # also train on the fold's own training rows, not on the target set alone


class HeadSpec(_HeadKeys):
    """Last-layer tuning of one head (solver/adapt/head_tuning.py): an adapt file's head keys and two it leaves fixed."""

    batch_size: int = Field(256, ge=1)
    seed: int = 0  # fold k's head trains with seed + k


class AdaptConfig(_HeadKeys):
    """<competition>/adapt/<name>.yaml: adapt a source's predictions to the test distribution (solver/adapt/stage.py).

    head_tuning also reads the keys of _HeadKeys (epochs, lr, weight_decay, target_weight, include_train)."""

    source: str  # a source under runs/<comp>/ (head_tuning: an experiment, whose fold checkpoints give the embeddings)
    method: Literal["prior_shift", "head_tuning", "thresholds"]
    # prior_shift: "estimate" (EM on the test posteriors), or the test priors as a list in class order or {class: p}
    priors: Literal["estimate"] | list[float] | dict[str, float] = "estimate"
    calibrate: Literal["temperature", "none"] = "temperature"  # temperature scaling of each fold model (fitted on its OOF) before EM
    # head_tuning: the target set is test rows predicted with at least `confidence` (pseudo-labels) and/or labelled_subset,
    # a CSV (path from the repo root) with the id column and, for test rows, the target column
    confidence: float | None = Field(None, gt=0, le=1)
    labelled_subset: str | None = None
    init: Literal["model", "fresh"] = "model"  # start from the fold model's classifier, or a new linear layer
    # thresholds (multilabel): the metric maximised on OOF ("competition": the competition's), the test's expected
    # label frequencies (null: none, "train", "estimate": EM per label, a list in class order or {label: f}), and
    # whether every row gets at least its most likely label
    metric: str = "macro_f1"
    expected_frequencies: Literal["train", "estimate"] | list[float] | dict[str, float] | None = None
    at_least_one: bool = False

    def head(self) -> HeadSpec:
        """The head_tuning settings of this file."""
        return HeadSpec(**self.model_dump(include=set(_HeadKeys.model_fields)))

    @model_validator(mode="before")
    @classmethod
    def _class_keys_as_text(cls, data: Any) -> Any:
        # YAML reads {0: 0.1, 1: 0.2} with integer keys; class names are compared as text.
        if isinstance(data, dict):
            keyed = [k for k in ("priors", "expected_frequencies") if isinstance(data.get(k), dict)]
            data = {**data, **{k: {str(c): p for c, p in data[k].items()} for k in keyed}}
        return data

    @model_validator(mode="after")
    def _keys_of_method(self) -> AdaptConfig:
        foreign = sorted(k for k in self.model_fields_set - {"source", "method"} if k not in ADAPT_KEYS[self.method])
        if foreign:
            owner = next(m for m, keys in ADAPT_KEYS.items() if foreign[0] in keys)
            raise ValueError(f"'{foreign[0]}' is an option of method {owner}, not of {self.method}; remove it")
        if self.method == "head_tuning" and self.confidence is None and self.labelled_subset is None:
            raise ValueError("head_tuning needs a target set: set confidence (pseudo-labels of test rows) and/or labelled_subset")
        return self
