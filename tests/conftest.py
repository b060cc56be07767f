import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Every supported combination of choices that changes the generated files.
COMBOS = [{"competition_task": task, "include_demo": demo} for task in ("multiclass", "multilabel") for demo in ("yes", "no")]


def combo_id(combo: dict) -> str:
    return f"{combo['competition_task']}-demo_{combo['include_demo']}"


def bake(output_dir: Path, **answers) -> subprocess.CompletedProcess:
    """Run the cookiecutter CLI as a user would, with --no-input and key=value answers."""
    args = [str(BIN / "cookiecutter"), "--no-input", str(TEMPLATE), "--output-dir", str(output_dir)]
    args += [f"{key}={value}" for key, value in answers.items()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session", params=COMBOS, ids=combo_id)
def baked(request, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp(combo_id(request.param))
    result = bake(out, project_name="Test Comp", **request.param)
    assert result.returncode == 0, result.stderr
    return out / "test_comp", request.param
