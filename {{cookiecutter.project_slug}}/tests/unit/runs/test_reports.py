"""Pictures: the leaderboard chart, a run's confusion matrix (multiclass) or per-label F1 (multilabel), fold curves."""

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import f1_score

from solver.competition.contract import Competition
from solver.runs.leaderboard import write_leaderboard
from solver.runs.plots import per_label_f1, write_run_plots
from solver.train.run import train_experiment
from tests.synthetic import TINY_EXPERIMENT, make_competition


def png_pixels(path: Path) -> np.ndarray:
    """The decoded picture; a PNG that is not blank."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.05, f"{path} is blank"
    return pixels


def _score(runs: Path, source: str, cv: float, folds: list[float], holdout: float | None = None, kind: str = "experiment") -> None:
    folder = runs / source
    folder.mkdir(parents=True, exist_ok=True)
    score = {"source": source, "kind": kind, "model": "resnet10t", "metric": "accuracy", "cv": cv, "fold_scores": folds, "holdout": holdout}
    (folder / "score.json").write_text(json.dumps(score))


def test_leaderboard_writes_a_chart_next_to_the_table(tmp_path):
    make_competition(tmp_path)
    comp = Competition.load(tmp_path, "synth")
    runs = comp.runs_dir
    _score(runs, "exp001", 0.95, [0.94, 0.96], holdout=0.955)
    _score(runs, "exp002", 0.97, [0.96, 0.98])
    _score(runs, "exp001/tta8", 0.96, [0.955, 0.965], kind="tta")
    _score(runs, "ens001", 0.98, [0.975, 0.985], holdout=0.97, kind="ensemble")
    # An ensemble whose input changed since it was made is stale: greyed in the chart, flagged in the table.
    (runs / "ens001/config.yaml").write_text(yaml.safe_dump({"input_hashes": {"exp001": "0" * 16}}))
    board, message = write_leaderboard(comp)
    assert board["source"].tolist() == ["ens001", "exp002", "exp001/tta8", "exp001"]
    assert board["stale"].tolist() == [True, False, False, False]
    assert "leaderboard.csv and leaderboard.png" in message
    four_rows = png_pixels(runs / "leaderboard.png")
    for source in ("exp002", "exp001/tta8", "ens001"):
        (runs / source / "score.json").unlink()
    write_leaderboard(comp)
    assert png_pixels(runs / "leaderboard.png").shape[0] < four_rows.shape[0]  # one bar per source
    (runs / "exp001/score.json").unlink()
    board, message = write_leaderboard(comp)
    assert board.empty and "no finished experiments yet" in message
    assert not (runs / "leaderboard.png").exists()  # no chart of scores that are gone


def test_per_label_f1_is_sklearns():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 6)) < 0.3).astype(np.float32)
    y[:, 5] = 0  # a label never present and (below) never predicted: F1 0
    probs = np.clip(y * 0.5 + rng.random(y.shape) * 0.6, 0, 1)
    probs[:, 5] = 0.1
    np.testing.assert_allclose(per_label_f1(y, probs, 0.5), f1_score(y, probs > 0.5, average=None, zero_division=0))


def test_run_plots_of_a_multiclass_run_with_many_classes(tmp_path):
    rng = np.random.default_rng(0)
    n_classes = 120  # more than fit as tick labels
    y = rng.integers(0, n_classes, 1000)
    probs = rng.random((1000, n_classes))
    probs[np.arange(1000), y] += 0.5
    for k in range(2):
        (tmp_path / f"fold{k}").mkdir()
        metrics = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.7, 0.5], "valid_loss": [1.1, 0.8, 0.7], "accuracy": [0.5, 0.6, 0.7]})
        metrics.to_csv(tmp_path / f"fold{k}/metrics.csv", index=False)
    classes = [f"class_{i}" for i in range(n_classes)]
    folds = [tmp_path / "fold0", tmp_path / "fold1"]
    written = write_run_plots(tmp_path, "multiclass", y, probs, classes, 0.5, "synth/exp", folds, "accuracy")
    assert [p.name for p in written] == ["confusion_matrix.png", "learning_curves.png"]
    for path in written:
        png_pixels(path)
    assert not (tmp_path / "per_label_f1.png").exists()


def test_a_finished_multilabel_run_has_its_per_label_f1_and_curves(tmp_path):
    make_competition(tmp_path, task="multilabel", experiment={**TINY_EXPERIMENT, "train": {**TINY_EXPERIMENT["train"], "epochs": 1}})
    train_experiment(tmp_path, "synth", "tiny")
    run = tmp_path / "runs/synth/tiny"
    png_pixels(run / "per_label_f1.png")
    png_pixels(run / "learning_curves.png")
    assert not (run / "confusion_matrix.png").exists()
    write_leaderboard(Competition.load(tmp_path, "synth"))
    png_pixels(tmp_path / "runs/synth/leaderboard.png")
