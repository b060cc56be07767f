import os
import signal
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


# The bake whose generated suite runs whole (the demo's digits competition included); the other bakes check only what
# their choices change (tests/test_bake.py).
DEFAULT_COMBO = {"competition_task": "multiclass", "include_demo": "yes"}
SUITE_TEST = "test_generated_tests_pass"


@pytest.fixture(scope="session")
def default_bake(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("default-bake")
    result = bake(out, project_name="Test Comp", **DEFAULT_COMBO)
    assert result.returncode == 0, result.stderr
    return out / "test_comp"


@pytest.fixture(scope="session")
def generated_suite(default_bake, tmp_path_factory):
    """The default bake's whole suite, the demo end to end included, as one pytest process in the background: (process,
    its log). Every test on two pytest-xdist workers, each with one core's threads (the baked tests/conftest.py). The
    demo is collected first, so one worker runs it from the start while the other takes the rest and, with --dist
    worksteal, the tests queued behind the demo. Measured on the 2-core VM, 2026-12-07: 849 s, against about 1,070 s for
    the baked `make test`'s two passes (the rest on two workers, 530 s, then the demo alone with both cores, 540 s) and
    990 s with --dist load. `make test` keeps the two passes: on a machine with many cores the demo would get one core's
    threads and be the whole run's length."""
    log = tmp_path_factory.mktemp("generated-suite") / "pytest.log"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=10", "-n", "2", "--dist", "worksteal"]
    with log.open("w") as out:  # a file, not a pipe: nobody reads the output until the suite ends
        process = subprocess.Popen(args, cwd=default_bake, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    yield process, log
    if process.poll() is None:  # the session ended first (interrupted, or the waiting test timed out)
        # SIGTERM first: torchrun, which some tests start, then stops the ranks it runs in sessions of their own.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session", autouse=True)
def _generated_suite_from_the_start(request):
    """Starts the generated suite with the session when its test is selected: the template's other tests (bakes, ruff,
    a collection, `make install`, cruft, the hooks: about 70 s of one core) then run beside it instead of before it,
    on the CPU its workers leave idle while they wait on subprocesses. Its test waits for it, last."""
    if any(item.originalname == SUITE_TEST for item in request.session.items):
        request.getfixturevalue("generated_suite")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.originalname == SUITE_TEST)  # stable: the others keep their order
