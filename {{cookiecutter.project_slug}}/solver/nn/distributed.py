"""Several processes on one experiment: DDP ranks under torchrun, and fold jobs started side by side.

DDP: `torchrun --nproc-per-node=N -m solver train ...` starts N copies of the same command; torchrun sets RANK,
WORLD_SIZE, LOCAL_RANK and the rendezvous, session() joins the process group (NCCL on CUDA, gloo on the
CPU). Every rank trains on its DistributedSampler share of the fold, predicts its shard of the validation
and test rows, and gather_in_order() puts the shards back in dataset order; only rank 0 writes files.

Fold jobs: `python -m solver train --fold 0` and `--fold 1` at once are separate experiments sharing one folder; a lock
per fold stops two jobs training the same fold, and the experiment lock serialises the shared writes
(replacing a fold, joining the folds' predictions).

python -m solver.nn.distributed --nproc-per-node N [--master-port P]   checks a launch before torchrun starts
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from solver.base.errors import SolverError, run_cli


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_current = Ranks()


def ranks() -> Ranks:
    """This process's place in the process group (rank 0 of 1 outside torchrun)."""
    return _current


def is_main() -> bool:
    return _current.is_main


@contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """Join the process group torchrun prepared; yields this process's device. A no-op in a plain run."""
    global _current
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield device
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if per_node > visible:
            raise SolverError(
                f"{per_node} processes per node (GPUS / --nproc-per-node) but {visible} CUDA device(s) visible; use at most GPUS={visible}"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    _current = Ranks(rank, world, local_rank)
    try:
        yield device
    finally:
        _current = Ranks()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank, e.g. before reading a file rank 0 wrote."""
    if _current.enabled:
        dist.barrier()


def sum_across_ranks(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (loss totals and sample counts)."""
    if not _current.enabled:
        return list(values)
    device = torch.device("cuda", _current.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def from_main(value):
    """Rank 0's value on every rank: decisions (stop now?) must be the same everywhere or the ranks deadlock."""
    if not _current.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP sends them at the start of each training
    forward, but each rank then updates its copy from its own batch: evaluate what rank 0 saves."""
    if _current.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def shard(n: int) -> list[int]:
    """This rank's rows of an n-row evaluation set: every world_size-th row, none repeated (no padding)."""
    return list(range(_current.rank, n, _current.world_size))


def gather_in_order(indices: list[int], rows: np.ndarray | None, n: int) -> np.ndarray:
    """Every rank's predicted rows, put back in dataset order; checks that each of the n rows came exactly once.

    rows is None on a rank whose shard is empty.
    """
    if not _current.enabled:
        return rows
    parts: list = [None] * _current.world_size
    dist.all_gather_object(parts, (list(indices), rows))
    parts = [part for part in parts if part[1] is not None]
    order = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in parts])
    if len(order) != n or len(np.unique(order)) != n:
        raise SolverError(f"gathering predictions over {_current.world_size} ranks gave {len(order)} rows for {n} samples")
    joined = np.concatenate([r for _, r in parts])
    out = np.empty_like(joined)
    out[order] = joined
    return out


def rank_seed(seed: int) -> int:
    """Each rank its own augmentation / MixUp / dropout stream; rank 0 keeps the single-process seed."""
    return seed + 1_000_003 * _current.rank


# --- fold jobs side by side --------------------------------------------------------------------------------


@contextmanager
def locked(path: Path, what: str, wait: bool = True) -> Iterator[None]:
    """An exclusive lock (flock) on path, released when the process ends, even killed.

    wait=False: fail at once when another process holds it, naming that process.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SolverError(f"{what} is in use by {holder} (lock {path}); wait for it to finish, or train another fold") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- checks before torchrun starts ---------------------------------------------------------------------------


def check_launch(nproc_per_node: int, node_rank: int = 0, master_port: int | None = None, cuda_devices: int | None = None) -> None:
    """Fail with one clear line where torchrun would fail with pages of traceback (or train on too few GPUs)."""
    visible = torch.cuda.device_count() if cuda_devices is None else cuda_devices
    if nproc_per_node < 1:
        raise SolverError(f"GPUS={nproc_per_node}: give a number of processes per node, 1 or more")
    if master_port is not None and node_rank == 0:  # node 0 hosts the rendezvous store on this port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's store does: TIME_WAIT is no conflict
            try:
                probe.bind(("", master_port))
            except OSError as err:
                raise SolverError(
                    f"MASTER_PORT={master_port} is in use on this machine ({err.strerror}); pick a free port, e.g. MASTER_PORT={master_port + 1}"
                ) from None
    if visible == 0:
        raise SolverError(
            f"GPUS={nproc_per_node} asked for, but no CUDA device is visible; to run {nproc_per_node} CPU processes with gloo "
            f"(tests, debugging) call torchrun yourself: torchrun --standalone --nproc-per-node={nproc_per_node} -m solver train ..."
        )
    if nproc_per_node > visible:
        raise SolverError(f"GPUS={nproc_per_node} but only {visible} CUDA device(s) are visible (CUDA_VISIBLE_DEVICES); use GPUS={visible} or fewer")


def main() -> None:
    parser = argparse.ArgumentParser(description="Check a torchrun launch (GPU count, rendezvous port) before it starts.")
    parser.add_argument("--nproc-per-node", type=int, required=True)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-port", type=int)
    args = parser.parse_args()
    check_launch(args.nproc_per_node, args.node_rank, args.master_port)


if __name__ == "__main__":
    run_cli(main)
