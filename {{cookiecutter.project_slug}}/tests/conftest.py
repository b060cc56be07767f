import os
from pathlib import Path

import pytest

# Tests run on the CPU with two threads however large the machine: same numbers everywhere, no oversubscription.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO
