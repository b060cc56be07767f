"""Custom code in a competition folder: "file.py:function" specs, loaded by path (folders are not packages)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from solver.base.errors import SolverError


def load_module(path: Path):
    name = f"competition_code_{abs(hash(str(Path(path).resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def custom_file(spec: str, folder: Path, key: str) -> Path:
    """The file of a 'file.py:function' spec, which must lie inside the competition folder: `make package` ships
    that folder, so code anywhere else would be missing from the package (and is never run, not even by make plan)."""
    folder = Path(folder)
    path = folder / spec.partition(":")[0]
    if not path.resolve().is_relative_to(folder.resolve()):
        raise SolverError(
            f"{key} '{spec}' is outside the competition folder {folder} (set in {folder / 'competition.yaml'}): "
            f"put the file in {folder} and name it relative to it, e.g. '{path.name}:{spec.partition(':')[2] or 'function'}'"
        )
    return path


def load_function(spec: str, folder: Path, default_name: str, key: str, signature: str) -> Callable:
    """'metric.py:score' -> the function `score` of <folder>/metric.py, or a SolverError saying what to write."""
    func_name = spec.partition(":")[2] or default_name
    path = custom_file(spec, folder, key)
    if not path.is_file():
        raise SolverError(f"{key} '{spec}': {path} not found; write it in the competition folder")
    fn = getattr(load_module(path), func_name, None)
    if not callable(fn):
        raise SolverError(f"{key} '{spec}': {path} defines no function '{func_name}'; write {func_name}{signature}")
    return fn
