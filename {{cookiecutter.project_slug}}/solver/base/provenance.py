"""Where a result came from: the git commit of the code that made it."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_sha(root: Path) -> str:
    """HEAD's SHA, with '-dirty' when the working tree has uncommitted changes; 'unknown' outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    sha = out.stdout.strip() if out.returncode == 0 else "unknown"
    return f"{sha}-dirty" if dirty and sha != "unknown" else sha
