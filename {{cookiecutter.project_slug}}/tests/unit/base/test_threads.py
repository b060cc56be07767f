"""Jobs side by side take their share of the cores: cores // jobs threads each, said in the log."""

import os

import pytest
import torch

from solver.base import threads
from solver.base.errors import SolverError


@pytest.fixture
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    for name in threads.THREAD_VARIABLES:
        monkeypatch.setenv(name, os.environ.get(name, "2"))  # share_threads sets them; monkeypatch puts them back
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("jobs, cores, share", [(1, 16, 16), (2, 16, 8), (3, 16, 5), (4, 2, 1), (2, 1, 1)])
def test_each_job_gets_its_share_of_the_cores_and_at_least_one(jobs, cores, share):
    assert threads.thread_share(jobs, cores) == share


def test_share_threads_sets_torch_and_openmp_and_says_so(monkeypatch, restore_threads):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    said = []
    assert threads.share_threads(2, log=said.append) == 2
    assert torch.get_num_threads() == 2
    assert all(os.environ[name] == "2" for name in threads.THREAD_VARIABLES)  # DataLoader workers and child processes
    assert said == ["threads: 2 of 4 cores for this job (2 job(s) side by side)"]


def test_more_jobs_than_cores_is_said_too(monkeypatch, restore_threads):
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    said = []
    assert threads.share_threads(3, log=said.append) == 1
    assert said == ["threads: 3 jobs on 2 core(s): 1 thread each, the jobs take turns on the cores"]


def test_no_jobs_is_a_clear_error():
    with pytest.raises(SolverError, match="jobs: 0 processes cannot share the machine"):
        threads.thread_share(0, 4)


def _cpuinfo(path, cores: int, threads_per_core: int):
    """A /proc/cpuinfo of one socket: `cores` cores with `threads_per_core` hyper-threads each, as Linux lists them."""
    blocks = [
        f"processor\t: {cpu}\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t\t: {cpu % cores}\ncpu cores\t: {cores}"
        for cpu in range(cores * threads_per_core)
    ]
    path.write_text("\n\n".join(blocks) + "\n\n")
    return path


def test_physical_cores_counts_a_hyper_threaded_core_once(tmp_path, monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _: set(range(8)))
    assert threads.physical_cores(_cpuinfo(tmp_path / "ht", cores=4, threads_per_core=2)) == 4
    assert threads.physical_cores(_cpuinfo(tmp_path / "plain", cores=8, threads_per_core=1)) == 8
    # Only the CPUs this process may run on count: CPUs 0 and 4 are the two threads of core 0.
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _: {0, 4})
    assert threads.physical_cores(tmp_path / "ht") == 1
    assert threads.physical_cores(tmp_path / "missing") == 2  # no cpuinfo: the logical CPUs allowed


def test_library_threads_take_the_jobs_share_when_one_is_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.library_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.library_threads() == threads.physical_cores()
