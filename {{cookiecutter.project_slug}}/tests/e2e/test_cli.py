"""The commands of `python -m solver <verb>`: errors are one line, not a traceback."""

import subprocess

import yaml

from tests.conftest import solver_command
from tests.synthetic import make_competition


def run(repo, root, *args):
    return subprocess.run(solver_command(args[0], "--root", str(root), *args[1:]), capture_output=True, text=True, timeout=300)


def test_bad_config_key_is_one_line_naming_key_and_file(repo, tmp_path):
    make_competition(tmp_path)
    path = tmp_path / "synth/configs/tiny.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["train"]["epochz"] = 3
    path.write_text(yaml.safe_dump(cfg))
    result = run(repo, tmp_path, "train", "--comp", "synth", "--exp", "tiny")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "unknown key 'train.epochz'" in result.stderr and "tiny.yaml" in result.stderr


def test_train_then_submit_then_leaderboard_from_the_command_line(repo, tmp_path):
    make_competition(tmp_path, task="multilabel")
    assert run(repo, tmp_path, "folds", "--comp", "synth").returncode == 0
    train = run(repo, tmp_path, "train", "--comp", "synth", "--exp", "tiny", "--fold", "0,1", "train.epochs=1")
    assert train.returncode == 0, train.stderr
    assert "CV macro_f1" in train.stdout
    submit = run(repo, tmp_path, "submit", "--comp", "synth", "--exp", "tiny")
    assert submit.returncode == 0 and "submission validated" in submit.stdout
    board = run(repo, tmp_path, "leaderboard", "--comp", "synth")
    assert board.returncode == 0 and "tiny" in board.stdout


def test_submit_without_predictions_is_one_line(repo, tmp_path):
    make_competition(tmp_path)
    result = run(repo, tmp_path, "submit", "--comp", "synth", "--source", "nothing")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "source 'nothing'" in result.stderr and "does not exist" in result.stderr


def test_submit_refuses_nan_predictions_in_one_line_and_records_nothing(repo, tmp_path):
    import numpy as np
    import pandas as pd

    make_competition(tmp_path, n_train=12, n_test=4)
    source = tmp_path / "runs/synth/e"
    source.mkdir(parents=True)
    ids = pd.read_csv(tmp_path / "data/synth/test.csv")["id"]
    pd.DataFrame({"id": ids, "cat": np.nan, "dog": 0.5, "fox": 0.5}).to_csv(source / "test.csv", index=False)
    result = run(repo, tmp_path, "submit", "--comp", "synth", "--source", "e")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {source / 'test.csv'}: 4 row(s) with NaN or infinite probabilities in column(s) ['cat'], ids 's012'")
    assert not (source / "submission.csv").exists() and not (tmp_path / "runs/synth/submissions.csv").exists()
