"""The digits demo end to end, as `make demo` runs it (a few minutes on a 2-core CPU)."""

import shutil
import subprocess
import sys

import pandas as pd
import pytest


@pytest.mark.slow
def test_demo_end_to_end(repo, tmp_path):
    shutil.copytree(repo / "digits", tmp_path / "digits")
    result = subprocess.run([sys.executable, str(repo / "bin/demo.py"), "--root", str(tmp_path)], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout)
    board = pd.read_csv(tmp_path / "runs/digits/leaderboard.csv")
    assert board.loc[0, "holdout"] >= 0.97 and board.loc[0, "cv"] >= 0.95
    sub = pd.read_csv(tmp_path / "runs/digits/exp001_resnet10t/submission.csv")
    sample = pd.read_csv(tmp_path / "data/digits/sample_submission.csv")
    assert sub["id"].tolist() == sample["id"].tolist() and sub["label"].between(0, 9).all()
    assert "held-out accuracy" in result.stdout
