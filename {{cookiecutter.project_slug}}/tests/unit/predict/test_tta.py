"""TTA views, averaging, the TTA stage as a leaderboard source, and embeddings."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.config.experiment import ExperimentConfig
from solver.nn.data import ImageDataset, build_transform
from solver.predict.embeddings import embeddings
from solver.predict.run import predict_experiment
from solver.predict.tta import ViewsDataset, combine_views
from solver.runs.leaderboard import write_leaderboard
from solver.submit.submission import make_submission
from solver.train.experiment import load_experiment
from solver.train.run import train_experiment
from tests.synthetic import make_competition


def test_combine_views():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])  # one sample, two views, two classes
    p = logits.softmax(-1)[0]
    torch.testing.assert_close(combine_views(logits, "multiclass", "probabilities")[0], p.mean(0))
    torch.testing.assert_close(combine_views(logits, "multiclass", "logits")[0], logits[0].mean(0).softmax(0))
    geometric = (p.log().mean(0)).exp()
    torch.testing.assert_close(combine_views(logits, "multiclass", "geometric")[0], geometric / geometric.sum())
    torch.testing.assert_close(combine_views(logits, "multilabel", "probabilities")[0], logits[0].sigmoid().mean(0))
    with pytest.raises(SolverError, match="valid: probabilities, logits, geometric"):
        combine_views(logits, "multiclass", "median")


def test_multilabel_geometric_mean_is_the_mean_logit():
    """Per label, the renormalised geometric mean of (p, 1 - p) over the views: sigmoid of the mean logit, as the
    multiclass branch is the softmax of the mean log-probability. Views at 0.9 and 0.1 disagree evenly: 0.5."""
    p = torch.tensor([[[0.9, 0.8], [0.1, 0.8]]])  # one sample, two views, two labels
    logits = torch.logit(p)
    combined = combine_views(logits, "multilabel", "geometric")[0]
    torch.testing.assert_close(combined, torch.tensor([0.5, 0.8]))  # the geometric mean of p alone gave 0.30 and 0.80
    torch.testing.assert_close(combined, logits[0].mean(0).sigmoid())


def _views(tmp_path, n_views, seed=0):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    cfg = ExperimentConfig.model_validate({"data": {"image_size": 16}, "augment": {"train": [{"name": "Affine", "rotate": [-30, 30], "p": 1}]}})
    base = ImageDataset([tmp_path / f"{i}.png" for i in range(3)], None, None, channels=3)
    plain = build_transform(cfg, [0.5] * 3, [0.25] * 3, train=False)
    augmented = build_transform(cfg, [0.5] * 3, [0.25] * 3, train=True)
    return ViewsDataset(base, plain, augmented, n_views, seed), plain, base


def test_views_are_seeded_per_sample_and_start_with_the_plain_image(tmp_path):
    views, plain, base = _views(tmp_path, 128)
    x, _ = views[1]
    assert x.shape == (128, 3, 16, 16)
    assert torch.equal(x[0], plain(image=base.image(1))["image"])
    assert not torch.equal(x[1], x[2])  # random views differ
    assert torch.equal(views[1][0], x)  # the same sample gives the same views again
    assert not torch.equal(views[2][0][1:], x[1:])


def test_views_with_a_random_resized_crop_are_at_the_checkpoint_size(tmp_path):
    import cv2

    for i, (h, w) in enumerate([(40, 30), (20, 52)]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8))
    cfg = ExperimentConfig.model_validate(
        {"data": {"image_size": 32}, "augment": {"train": [{"name": "RandomResizedCrop"}, {"name": "LongestMaxSize"}]}}
    )
    base = ImageDataset([tmp_path / f"{i}.png" for i in range(2)], None, None, channels=3)
    plain = build_transform(cfg, [0.5] * 3, [0.25] * 3, train=False, image_size=24)
    augmented = build_transform(cfg, [0.5] * 3, [0.25] * 3, train=True, image_size=24)  # a checkpoint of a 24-pixel stage
    views = ViewsDataset(base, plain, augmented, 6, seed=0)
    for i in range(2):
        x, _ = views[i]
        assert x.shape == (6, 3, 24, 24)
        assert not torch.equal(x[1], x[2])


def test_tta_stage_is_a_source_with_its_own_leaderboard_row(tmp_path):
    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    score = predict_experiment(tmp_path, "synth", "tiny", tta=4)
    assert score["source"] == "tiny/tta4" and score["kind"] == "tta"
    run = tmp_path / "runs/synth/tiny"
    oof = pd.read_csv(run / "tta4/oof.csv", dtype={"id": str})
    assert oof["id"].tolist() == Competition.load(tmp_path, "synth").read_train()["id"].tolist()
    board, _ = write_leaderboard(Competition.load(tmp_path, "synth"))
    assert set(board["source"]) == {"tiny", "tiny/tta4"}
    assert make_submission(Competition.load(tmp_path, "synth"), run / "tta4").is_file()
    # TTA-1 with the plain view only is the plain prediction.
    predict_experiment(tmp_path, "synth", "tiny", tta=1)
    plain = pd.read_csv(run / "oof.csv")
    one = pd.read_csv(run / "tta1/oof.csv")
    np.testing.assert_allclose(one.iloc[:, 2:].to_numpy(), plain.iloc[:, 2:].to_numpy(), atol=1e-5)


def test_embeddings_per_fold_are_pre_logits_and_cached(tmp_path):
    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    exp = load_experiment(tmp_path, "synth", "tiny")
    train_emb, test_emb = embeddings(exp)
    assert len(train_emb) == 2 and train_emb[0].shape[0] == len(exp.train_df) and test_emb[1].shape[0] == len(exp.test_df)
    cached = tmp_path / "runs/synth/tiny/fold0/embeddings.npz"
    assert cached.is_file()
    again, _ = embeddings(exp)
    np.testing.assert_array_equal(again[0], train_emb[0])
    # A new test set (one row fewer): the cache was made for other ids and is recomputed.
    for name in ("test.csv", "sample_submission.csv"):  # (the two must list the same ids: checked before any stage)
        pd.read_csv(tmp_path / "data/synth" / name).iloc[:-1].to_csv(tmp_path / "data/synth" / name, index=False)
    _, new_test = embeddings(load_experiment(tmp_path, "synth", "tiny"))
    assert new_test[0].shape[0] == len(exp.test_df) - 1


def test_candidate_views_flip_only_where_training_flipped():
    from solver.predict.tta_auto import candidate_views

    no_flip = candidate_views([{"name": "Affine", "p": 0.8}])
    assert no_flip[0] == "identity" and "hflip" not in no_flip and "vflip" not in no_flip
    assert {"shift_left", "shift_right", "shift_up", "shift_down", "scale_0.9", "scale_1.1"} <= set(no_flip)
    assert "hflip" in candidate_views([{"name": "HorizontalFlip", "p": 0.5}]) and "vflip" not in candidate_views([{"name": "HorizontalFlip"}])


def test_fixed_views_flip_and_shift_the_batch():
    from solver.predict.tta_auto import apply_view

    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 5, 3] = 1.0
    torch.testing.assert_close(apply_view(x, "hflip")[0, 0, 5, 12], torch.tensor(1.0))
    moved = apply_view(x, "shift_right")  # 1/16 of 16 px: one pixel, exactly
    assert moved[0, 0, 5, 4] == pytest.approx(1.0, abs=1e-5) and moved[0, 0, 5, 3] == pytest.approx(0.0, abs=1e-5)
    down = apply_view(x, "shift_down")
    assert down[0, 0, 6, 3] == pytest.approx(1.0, abs=1e-5)
    assert apply_view(x, "scale_1.1").shape == x.shape


def test_views_are_chosen_on_the_other_folds_only():
    """Fold k's subset depends on the other folds' rows: scrambling fold k's labels leaves it unchanged. A view that
    carries the signal is chosen; one of pure noise is not."""
    from solver.competition.metrics import get_metric
    from solver.predict.tta_auto import choose_fold_safe

    rng = np.random.default_rng(0)
    n, c = 600, 3
    y = rng.integers(0, c, n)
    folds = np.arange(n) % 3
    signal = np.eye(c)[y] * 1.2
    identity = signal + rng.normal(0, 1, (n, c))
    helpful = signal + rng.normal(0, 1, (n, c))  # an independent noisy look at the same image
    noise = rng.normal(0, 3, (n, c))
    logits = np.stack([identity, helpful, noise])
    metric = get_metric("accuracy", "multiclass")
    subsets = choose_fold_safe(logits, y, folds, metric, "multiclass")
    assert all(s[0] == 0 and 1 in s and 2 not in s for s in subsets.values())
    scrambled = y.copy()
    scrambled[folds == 1] = (y[folds == 1] + 1) % c
    assert choose_fold_safe(logits, scrambled, folds, metric, "multiclass")[1] == subsets[1]


def test_auto_tta_writes_a_source_only_when_it_beats_the_plain_cv(tmp_path, capsys):
    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    run = tmp_path / "runs/synth/tiny"
    plain = json.loads((run / "score.json").read_text())
    score = predict_experiment(tmp_path, "synth", "tiny", tta="auto")
    out = capsys.readouterr().out
    assert "gain per view" in out and "views per fold (chosen on the other folds)" in out
    assert (run / "fold0/tta_views.npz").is_file()
    # The identity view through the views path is the plain prediction.
    with np.load(run / "fold0/tta_views.npz") as saved:
        identity = torch.from_numpy(saved["oof"][0]).softmax(-1).numpy()
    fold0 = pd.read_csv(run / "fold0/oof.csv")
    np.testing.assert_allclose(identity, fold0.iloc[:, 2:].to_numpy(), atol=1e-5)
    if score is None:
        assert "tta_auto not written: its CV" in out and not (run / "tta_auto").exists()
    else:
        assert score["source"] == "tiny/tta_auto" and score["cv"] > plain["cv"]
        assert set(json.loads((run / "tta_auto/views.json").read_text())["per_fold"]) == {"0", "1"}


def test_tta_n_says_when_it_does_not_beat_the_plain_cv(tmp_path, capsys):
    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    score = predict_experiment(tmp_path, "synth", "tiny", tta=1)  # the plain view only: equal, so not better
    lines = [line for line in capsys.readouterr().out.splitlines() if "does not beat the plain" in line]
    assert len(lines) == 1 and lines[0].startswith("synth/tiny/tta1: CV accuracy")
    assert score["source"] == "tiny/tta1"  # TTA-N, asked for by number, is still written
