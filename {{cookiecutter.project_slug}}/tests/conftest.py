import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Tests run on the CPU with two threads however large the machine: same numbers everywhere, no oversubscription.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))
# Under pytest-xdist (pytest -n N) the N workers share the cores as `make train JOBS=N` jobs do: N torch processes each
# taking every core's threads run several times slower than alone. Subprocesses inherit the share (OMP_NUM_THREADS).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    from solver.base.threads import THREAD_VARIABLES, thread_share  # noqa: E402

    torch.set_num_threads(min(torch.get_num_threads(), thread_share(WORKERS)))
    for _name in THREAD_VARIABLES:
        os.environ[_name] = str(torch.get_num_threads())

REPO = Path(__file__).resolve().parents[1]
# Subprocesses run `python -m solver <verb>`: whatever their cwd, they find this repository's solver first.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)


def solver_command(verb: str, *args: str) -> list[str]:
    """The command line of `python -m solver <verb> args` as make runs it (under torchrun: [1:], after its options)."""
    return [sys.executable, "-m", "solver", verb, *args]


def run_solver(*argv: str) -> subprocess.CompletedProcess:
    """`python -m solver argv` in this test's process: the same entry point (solver.__main__.main, with its one-line
    errors and exit status 2), its printed output and exit status as subprocess.run gives them, without a new process
    importing torch, timm and the solver again (about 9 s of CPU each). Threads and environment variables a verb sets
    are put back. A test that needs a process of its own (jobs side by side, a kill, torchrun, an environment read at
    import time) runs solver_command in a subprocess instead."""
    from solver.__main__ import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with process_state_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(argv))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["python", "-m", "solver", *argv], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def process_state_kept():
    """Code a test runs in its own process (run_solver, tests/e2e/test_benchmarks.py's bench) may set torch's threads
    and environment variables (`--jobs`, `--threads`), as it would in a process of its own: both are put back."""
    threads, environ = torch.get_num_threads(), dict(os.environ)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(environ)


@pytest.fixture
def repo() -> Path:
    return REPO


def pytest_collection_modifyitems(config, items):
    """The minutes-long tests first. In one pytest-xdist run of every test (pytest -n 2 --dist worksteal, as the template's
    CI runs it on 2 cores), a worker starts the demo at once and the others take the rest, stealing from its queue;
    started last, the demo would run alone at the end. `make test` runs them in two passes and is unaffected."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order
