import os
import sys
from pathlib import Path

import pytest

# Tests run on the CPU with two threads however large the machine: same numbers everywhere, no oversubscription.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
# Subprocesses run `python -m solver <verb>`: whatever their cwd, they find this repository's solver first.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)


def solver_command(verb: str, *args: str) -> list[str]:
    """The command line of `python -m solver <verb> args` as make runs it (under torchrun: [1:], after its options)."""
    return [sys.executable, "-m", "solver", verb, *args]


@pytest.fixture
def repo() -> Path:
    return REPO
