"""torch.distributed under torchrun on the CPU (gloo): 2 processes train a fold like 1 process does.

The 2-process run uses half the per-process batch, so both runs take the same optimizer steps over the
same effective batch; their scores must agree within a tolerance and the OOF must hold every row once, in order.
The 2-process run with DataLoader workers (validation and test read through each rank's Subset) gives the
same numbers as without: augmentations are seeded per sample, not per worker.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.nn.distributed import check_launch
from tests.conftest import run_solver, solver_command
from tests.synthetic import make_competition

EXPERIMENT = {
    "model": {"name": "test_resnet"},
    "data": {"image_size": 32, "batch_size": 16, "num_workers": 0},
    "augment": {"train": [{"name": "RandomBrightnessContrast", "p": 0.5}]},
    "train": {"epochs": 3, "lr": 3e-3, "early_stopping_patience": None, "folds": [0]},
}
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def train(repo, root, processes: int, *overrides: str) -> subprocess.CompletedProcess:
    """`make train GPUS=<processes>`: torchrun itself (python -m torch.distributed.run is the torchrun entry point); its
    -m runs `solver` as a module."""
    command = solver_command("train", "--root", str(root), "--comp", "synth", "--exp", "tiny", *overrides)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *command[1:]]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900, cwd=repo)


def test_two_gloo_processes_match_one_process(repo, tmp_path):
    roots = {n: tmp_path / f"p{n}" for n in (1, 2, "2 with workers")}
    for root in roots.values():
        make_competition(root, n_train=192, experiment=EXPERIMENT)
    one = run_solver("train", "--root", str(roots[1]), "--comp", "synth", "--exp", "tiny")  # the reference: one process, this one
    assert one.returncode == 0, one.stderr[-3000:]
    for n, workers in ((2, 0), ("2 with workers", 2)):
        two = train(repo, roots[n], 2, "data.batch_size=8", f"data.num_workers={workers}")
        assert two.returncode == 0, two.stderr[-3000:]
        assert "2 processes (cpu) x batch 8" in two.stdout
        assert two.stdout.count("fold 0: best") == 1  # only rank 0 prints

    comp = Competition.load(roots[2], "synth")
    train_df = comp.read_train()
    folds = pd.read_csv(roots[2] / "runs/synth/folds.csv", dtype={"id": str}).set_index("id").loc[train_df["id"], "fold"].to_numpy()
    scores = {}
    for n, root in roots.items():
        fold = root / "runs/synth/tiny/fold0"
        oof = pd.read_csv(fold / "oof.csv", dtype={"id": str})
        # Every row of fold 0 exactly once, in train.csv order: no padding rows, no shard order.
        assert oof["id"].tolist() == train_df["id"][folds == 0].tolist()
        probs = oof[comp.classes].to_numpy()
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
        y = comp.encode_targets(train_df)[folds == 0]
        scores[n] = comp.metric(y, probs)
        metrics = pd.read_csv(fold / "metrics.csv")
        assert metrics["epoch"].tolist() == [1, 2, 3]
        # The gathered validation score during training is the one the OOF gives (best.pt's epoch).
        assert scores[n] == pytest.approx(metrics["best"].iloc[-1])
        assert not list(fold.parent.glob("fold0.partial")) and not list(fold.glob(".*.tmp"))
        test = pd.read_csv(fold / "test.csv", dtype={"id": str})
        assert test["id"].tolist() == comp.read_test()["id"].tolist()
    # 3 epochs on 96 images: both runs learn the task, and DDP does not lose or double data.
    assert scores[1] > 0.7 and scores[2] > 0.7, scores
    assert abs(scores[1] - scores[2]) <= 0.2, scores
    for name in ("oof.csv", "test.csv", "metrics.csv"):  # 2 workers per rank: bitwise the same run
        with_workers = pd.read_csv(roots["2 with workers"] / "runs/synth/tiny/fold0" / name).drop(columns="seconds", errors="ignore")
        pd.testing.assert_frame_equal(with_workers, pd.read_csv(roots[2] / "runs/synth/tiny/fold0" / name).drop(columns="seconds", errors="ignore"))
    config = yaml.safe_load((roots[2] / "runs/synth/tiny/fold0/config.yaml").read_text())
    assert config["config"]["data"]["batch_size"] == 8


RANKS_STAY_IN_SYNC = """
import sys
import timm, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[1])
from solver.nn import distributed
from solver.config.experiment import ExperimentConfig
from solver.nn.curriculum import make_schedule
from solver.competition.metrics import get_metric
from solver.train.loop import Trainer

with distributed.session(torch.device("cpu")) as device:
    rank = distributed.ranks().rank
    torch.manual_seed(rank)  # different initial weights: DDP must start every rank from rank 0's
    cfg = ExperimentConfig.model_validate({"model": {"name": "test_resnet"}, "data": {"batch_size": 8}, "train": {"lr": 1e-3}})
    trainer = Trainer(timm.create_model("test_resnet", num_classes=3), cfg, get_metric("accuracy", "multiclass"), "multiclass", 3, device, 24)
    trainer.schedule = make_schedule(trainer.optimizer, trainer.segments[0], trainer.n_steps, True)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    batches = [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    loss = trainer.train_epoch(batches, trainer.epochs[0], "train")
    weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    everyone = [None, None]
    dist.all_gather_object(everyone, (loss, weights))
    if rank == 0:
        same = torch.equal(everyone[0][1], everyone[1][1]) and everyone[0][0] == everyone[1][0]
        print("SYNCED" if same else "DIVERGED", everyone[0][0], everyone[1][0])
"""


def test_ranks_hold_the_same_weights_after_steps_on_different_data(repo, tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_STAY_IN_SYNC)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script), str(repo)]
    run = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600, cwd=repo)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "SYNCED" in run.stdout, run.stdout  # gradients averaged over the ranks, the loss reduced over them


def test_sync_bn_on_cpu_processes_is_a_clear_error(repo, tmp_path):
    make_competition(tmp_path, n_train=32, experiment={**EXPERIMENT, "train": {**EXPERIMENT["train"], "epochs": 1}})
    run = train(repo, tmp_path, 2, "train.sync_bn=true")
    assert run.returncode != 0
    assert "error: train.sync_bn=true: SyncBatchNorm runs on CUDA devices only" in run.stderr


def launch_check(repo, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solver.nn.distributed", *args], env=ENV, capture_output=True, text=True, timeout=120, cwd=repo)


def test_more_gpus_than_visible_is_one_clear_line(repo):
    run = launch_check(repo, "--nproc-per-node", "2")
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and run.stderr.startswith("error: GPUS=2 asked for, but no CUDA device is visible")
    with pytest.raises(SolverError, match=r"GPUS=4 but only 2 CUDA device\(s\) are visible"):
        check_launch(4, cuda_devices=2)
    check_launch(2, cuda_devices=2)  # enough devices: no error


def test_rendezvous_port_in_use_is_one_clear_line(repo):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = launch_check(repo, "--nproc-per-node", "1", "--master-port", str(port))
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert run.stderr.startswith(f"error: MASTER_PORT={port} is in use on this machine")
    check_launch(1, master_port=port, cuda_devices=1)  # released: free again
