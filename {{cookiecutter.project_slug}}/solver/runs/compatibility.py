"""Whether two runs' resolved configs make one CV: the keys that change what a model learns, compared."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from solver.config.experiment import ExperimentConfig
from solver.runs.source import read_config

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
    return read_config(folder, required=True)
