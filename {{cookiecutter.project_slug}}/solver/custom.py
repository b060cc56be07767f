"""Custom code in a competition folder: "file.py:function" specs, loaded by path (folders are not packages)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from solver.errors import SolverError


def load_module(path: Path):
    name = f"competition_code_{abs(hash(str(Path(path).resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load_function(spec: str, folder: Path, default_name: str, key: str, signature: str) -> Callable:
    """'metric.py:score' -> the function `score` of <folder>/metric.py, or a SolverError saying what to write."""
    file_name, _, func_name = spec.partition(":")
    func_name = func_name or default_name
    path = Path(folder) / file_name
    if not path.is_file():
        raise SolverError(f"{key} '{spec}': {path} not found; write it in the competition folder")
    fn = getattr(load_module(path), func_name, None)
    if not callable(fn):
        raise SolverError(f"{key} '{spec}': {path} defines no function '{func_name}'; write {func_name}{signature}")
    return fn
