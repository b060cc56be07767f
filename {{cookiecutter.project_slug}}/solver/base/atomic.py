"""Atomic writes: a killed or failed run never leaves a file that looks complete.

Every file that matters is written to a temporary file in the same folder and renamed into place;
rename is atomic on POSIX file systems, so readers see the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from solver.base.errors import SolverError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _temp_beside(path: Path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_writable(folder: Path) -> None:
    """The folder exists or can be made, and a file can be written in it: a read-only runs/ fails at once, named,
    not with a traceback when the first result is written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise SolverError(f"cannot write to {folder} ({err.strerror}): make it writable, or point runs/ (a symlink) to a folder that is") from None


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call write(tmp_path) and move the result to path only if it succeeded."""
    with _temp_beside(path) as tmp:
        write(tmp)
    return Path(path)


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def write_text(text: str, path: Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(obj: Any, path: Path) -> Path:
    return write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def write_yaml(obj: Any, path: Path) -> Path:
    return write_text(yaml.safe_dump(obj, sort_keys=False), path)


def save_torch(obj: Any, path: Path) -> Path:
    import torch  # here, not at the top: every verb writes files through this module, and most never touch torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def promote_dir(partial: Path, final: Path) -> None:
    """Replace `final` by the finished `partial` folder, keeping the old one until the swap is done."""
    backup = final.with_name(final.name + ".old")
    if backup.exists():
        shutil.rmtree(backup)
    if final.exists():
        os.replace(final, backup)
    os.replace(partial, final)
    if backup.exists():
        shutil.rmtree(backup)
