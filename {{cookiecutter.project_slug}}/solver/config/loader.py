"""The strict loader: YAML files and key=value overrides validated against a schema.

An unknown key or a wrong type is one error naming the key and the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from solver.base.errors import SolverError, did_you_mean

Task = Literal["multiclass", "multilabel"]


class Strict(BaseModel):
    # extra="forbid": a typo in a key must fail loudly instead of silently using a default.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def __init__(self, /, **data: Any) -> None:
        """Built in code (KnnSpec(k=3)), a bad value is the same one-line SolverError as in a file, named by the class."""
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise SolverError(format_validation_error(err, type(self), type(self).__name__)) from None

    # Validation of a section inside a file never calls __init__ (pydantic's own marker, as on BaseModel.__init__):
    # its errors stay part of the file's one message, with the file's name and the section's key.
    __init__.__pydantic_base_init__ = True


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
        _check_flow_keys(item, value)
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _check_flow_keys(item: str, value: Any) -> None:
    """YAML reads {foo:1} (no space after the colon) as the key 'foo:1' without a value, which timm then drops."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if inner is None and isinstance(key, str) and ":" in key:
                name, _, given = key.partition(":")
                fix = "{" + f"{name}: {given}" + "}"  # (no doubled braces: they would read as template syntax in the generated repo)
                raise SolverError(f"override '{item}': {key!r} is read as a key without a value; write {fix}, with a space after the colon")
            _check_flow_keys(item, inner)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
