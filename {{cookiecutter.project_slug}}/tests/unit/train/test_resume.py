"""Kill a real training process mid-run; the resumed run ends with the same weights as an unkilled one."""

import os
import signal
import subprocess
import time

import pandas as pd
import torch
import yaml

from solver.train.run import train_experiment
from tests.conftest import solver_command
from tests.synthetic import make_competition

RECIPE = {
    "model": {"name": "test_resnet", "drop_rate": 0.2},
    "data": {"image_size": 32, "batch_size": 8},
    "augment": {"train": [{"name": "Affine", "rotate": [-10, 10], "p": 0.7}, {"name": "RandomBrightnessContrast"}]},
    "train": {
        "lr": 3e-3,
        "schedule": {"name": "cyclic", "half_cycle_epochs": 1, "warmup_steps": 3},
        "stages": [
            {"epochs": 2, "image_size": 24, "aug_p": [0.3, 0.9], "mixup_alpha": 0.4},
            {"epochs": 2, "continue_schedule": True},
            {"epochs": 2, "aug_p": 0.0, "lr": 3e-4, "schedule": {"name": "plateau", "patience": 0}},
        ],
        "ema_decay": 0.9,
        "early_stopping_patience": None,
        "folds": [0],
    },
}
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def train_command(repo, root):
    return solver_command("train", "--root", str(root), "--comp", "synth", "--exp", "tiny")


def final_weights(root):
    return torch.load(root / "runs/synth/tiny/fold0/last.pt", map_location="cpu", weights_only=True)


def test_killed_run_resumes_to_identical_weights(repo, tmp_path):
    roots = {name: tmp_path / name for name in ("straight", "killed")}
    for root in roots.values():
        make_competition(root, n_train=96, experiment=RECIPE)

    straight = subprocess.run(train_command(repo, roots["straight"]), env=ENV, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    partial = roots["killed"] / "runs/synth/tiny/fold0.partial"
    process = subprocess.Popen(train_command(repo, roots["killed"]), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until 3 epochs are done (mid-curriculum, inside the continued schedule)
        metrics = partial / "metrics.csv"
        if metrics.is_file() and len(pd.read_csv(metrics)) >= 3:
            break
        time.sleep(0.02)
    time.sleep(0.3)  # into the 4th epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (roots["killed"] / "runs/synth/tiny/fold0").exists()  # nothing looks finished
    # The resume point is last.pt (written just before metrics.csv; a kill can fall between the two writes).
    killed_at = torch.load(partial / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    assert 3 <= killed_at < 6

    resumed = subprocess.run(train_command(repo, roots["killed"]), env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming at epoch {killed_at + 1}" in resumed.stderr + resumed.stdout

    a, b = final_weights(roots["straight"]), final_weights(roots["killed"])
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after resume"
    m_a = pd.read_csv(roots["straight"] / "runs/synth/tiny/fold0/metrics.csv").drop(columns="seconds")
    m_b = pd.read_csv(roots["killed"] / "runs/synth/tiny/fold0/metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(m_a, m_b)
    config = yaml.safe_load((roots["killed"] / "runs/synth/tiny/fold0/config.yaml").read_text())
    assert config["config"]["train"]["ema_decay"] == 0.9


def test_worker_count_does_not_change_the_weights(tmp_path):
    """data.num_workers is a runtime key (a fold may resume or join under another count, `auto` differs between
    machines): each sample's augmentations are seeded by (epoch, sample), so 0 or 2 workers train the same weights."""
    augmented = {**RECIPE["train"], "stages": RECIPE["train"]["stages"][:1]}  # 2 epochs: ramped augmentations, MixUp
    runs = {}
    for workers in (0, 2):
        root = tmp_path / f"workers{workers}"
        make_competition(root, n_train=48, experiment={**RECIPE, "train": augmented})
        train_experiment(root, "synth", "tiny", overrides=[f"data.num_workers={workers}"])
        runs[workers] = root / "runs/synth/tiny/fold0"
    a, b = (torch.load(run / "last.pt", map_location="cpu", weights_only=True) for run in runs.values())
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs between 0 and 2 workers"
    m_a, m_b = (pd.read_csv(run / "metrics.csv").drop(columns="seconds") for run in runs.values())
    pd.testing.assert_frame_equal(m_a, m_b)
