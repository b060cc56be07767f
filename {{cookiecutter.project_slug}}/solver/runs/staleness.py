"""Whether a source was made from inputs that changed since: files_hash records them, stale_inputs compares."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml


def files_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes() if Path(path).is_file() else b"missing")
    return digest.hexdigest()[:16]


def stale_inputs(source_dir: Path) -> str | None:
    """A level-2 source records the hashes of the files it was made from; a changed or missing one makes it stale."""
    config_path = source_dir / "config.yaml"
    if not config_path.is_file():
        return None
    config = yaml.safe_load(config_path.read_text()) or {}
    if config.get("stale"):  # a TTA or kNN source whose folds were retrained since (solver.train.experiment._mark_derived_stale)
        return str(config["stale"])
    recorded = config.get("input_hashes") or {}
    for relative, digest in recorded.items():
        if stale_inputs(source_dir.parent / relative):
            return f"its input '{relative}' is stale"
        paths = [source_dir.parent / relative / name for name in ("oof.csv", "test.csv")]
        if relative.endswith("/knn"):
            paths = [source_dir.parent / relative / name for name in ("features_oof.csv", "features_test.csv")]
        if files_hash(paths) != digest:
            return f"its input '{relative}' changed since it was made"
    return None
