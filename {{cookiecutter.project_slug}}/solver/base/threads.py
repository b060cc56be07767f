"""Several training processes on one machine: each takes its share of the cores, not all of them.

torch and OpenMP start one thread per core in every process; two jobs side by side then run 2 x cores threads
on the cores and each runs several times slower than alone (measured 8x on 2 cores, issue 16). A job told how
many jobs share the machine (`--jobs N`, JOBS=N / WORKERS=N in make) uses cores // N threads.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from solver.base.errors import SolverError

# Read by OpenMP, MKL and OpenBLAS when they start: set for the DataLoader workers and any child process.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _allowed_cpus() -> set[int]:
    """The logical CPUs this process may run on (a container's or taskset's limit, not the machine's count)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's count)."""
    return len(_allowed_cpus())


def physical_cores(cpuinfo: Path = Path("/proc/cpuinfo")) -> int:
    """The physical cores among those this process may run on: two hyper-threads of one core share its arithmetic units,
    and LightGBM's docs advise one thread per physical core. Linux reads /proc/cpuinfo; elsewhere, the logical count."""
    allowed = _allowed_cpus()
    try:
        blocks = cpuinfo.read_text().split("\n\n")
    except OSError:
        return len(allowed)
    cores = set()
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        if "processor" in fields and int(fields["processor"]) in allowed:
            cores.add((fields.get("physical id", "0"), fields.get("core id", fields["processor"])))
    return len(cores) or len(allowed)  # no core ids (some ARM kernels list none): the logical CPUs


def library_threads() -> int:
    """Threads for a library given an explicit count (LightGBM): this process's share when one was set
    (OMP_NUM_THREADS, which JOBS=N and the test workers set; OpenMP threads beyond the share contend, measured 10x
    slower on a loaded 2-core box), else one per physical core."""
    share = os.environ.get("OMP_NUM_THREADS", "")
    return int(share) if share.isdigit() and int(share) > 0 else physical_cores()


def thread_share(jobs: int, cores: int | None = None) -> int:
    """Threads for one of `jobs` processes on `cores` cores: an equal share, at least one."""
    if jobs < 1:
        raise SolverError(f"jobs: {jobs} processes cannot share the machine; give a number of at least 1, e.g. JOBS=2")
    return max(1, (cores or available_cores()) // jobs)


def share_threads(jobs: int, log=print) -> int:
    """Set this process's torch and OpenMP threads to its share of the cores, say so, and return the number."""
    cores = available_cores()
    threads = thread_share(jobs, cores)
    torch.set_num_threads(threads)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if jobs > 1 and cores < jobs:
        log(f"threads: {jobs} jobs on {cores} core(s): 1 thread each, the jobs take turns on the cores")
    else:
        log(f"threads: {threads} of {cores} cores for this job ({jobs} job(s) side by side)")
    return threads
