"""Bad input stops `make train` before the first epoch with one `error:` line: no traceback, nothing trained."""

import re
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from solver.base.errors import SolverError, run_cli
from solver.competition.check_data import check_data
from solver.competition.contract import Competition
from solver.competition.images import read_header, read_image
from solver.nn.data import ImageDataset
from solver.train.run import train_experiment
from tests.synthetic import make_competition


def train(root: Path, capsys, *overrides: str) -> str:
    """`make train` in this process (no new interpreter to start): what the user reads on stderr, after exit status 2."""
    with pytest.raises(SystemExit) as stopped:
        run_cli(lambda: train_experiment(root, "synth", "tiny", overrides=["train.epochs=1", *overrides]))
    assert stopped.value.code == 2
    return capsys.readouterr().err


def assert_stops_before_training(err: str, root: Path, *expected: str) -> None:
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1, err
    for text in expected:
        assert text in err, err
    assert not list((root / "runs").glob("synth/tiny/fold*")), "a fold was trained (or started) before the error"


def _to_jpeg(root: Path) -> None:
    """The competition's images as JPEG files (image_pattern {id}.jpg)."""
    for png in (root / "data/synth").glob("*/*.png"):
        cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)))
        png.unlink()
    path = root / "synth/competition.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "image_pattern": "{id}.jpg"}))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _header_only_train(root: Path) -> None:
    (root / "data/synth/train.csv").write_text("id,label\n")


def _unreadable_image(root: Path) -> None:
    (root / "data/synth/test/s049.png").write_bytes(b"\x89PNG\r\n\x1a\n but no image after the signature")


def _sixteen_bit_image(root: Path) -> None:
    cv2.imwrite(str(root / "data/synth/train/s007.png"), np.full((32, 32, 3), 1000, np.uint16))


def _one_channel_image(root: Path) -> None:
    cv2.imwrite(str(root / "data/synth/test/s050.png"), np.zeros((32, 32), np.uint8))


def _test_id_not_in_sample(root: Path) -> None:
    path = root / "data/synth/sample_submission.csv"
    pd.read_csv(path).iloc[1:].to_csv(path, index=False)


def _truncated_jpeg(root: Path) -> None:
    _to_jpeg(root)
    _truncate(root / "data/synth/train/s009.jpg")


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (_header_only_train, ["train.csv: no rows (only a header)"]),
        (_unreadable_image, ["test images that do not decode", "s049.png: not a readable image"]),
        (_sixteen_bit_image, ["s007.png has dtype uint16; only 8-bit images"]),
        (_one_channel_image, ["different channel counts: 1 with 1 channel(s), e.g. ", "s050.png"]),
        (_test_id_not_in_sample, ["test ids absent from sample_submission.csv", "test.csv line 2: 's048'"]),
        (_truncated_jpeg, ["cannot read image ", "s009.jpg: the file is truncated"]),
    ],
)
def test_bad_data_stops_before_the_first_epoch(tmp_path, capsys, corrupt, expected):
    make_competition(tmp_path)
    corrupt(tmp_path)
    assert_stops_before_training(train(tmp_path, capsys), tmp_path, "problem(s) in ", *expected)
    assert not (tmp_path / "runs").exists()  # not even the folds file


def test_multilabel_train_without_any_label_stops_before_training(tmp_path, capsys):
    make_competition(tmp_path, task="multilabel", classes=["0", "1", "2", "3"])
    path = tmp_path / "data/synth/train.csv"
    pd.read_csv(path).assign(Target="").to_csv(path, index=False)
    assert_stops_before_training(train(tmp_path, capsys), tmp_path, "every row's 'Target' is empty")


@pytest.mark.parametrize(
    "folds, expected", [(["0", "x"], "not a fold number: 'x'"), (["0", "inf"], "not a fold number: 'inf'"), (["0", "2"], "outside 0..1: '2'")]
)
def test_a_bad_folds_file_stops_before_any_fold_trains(tmp_path, capsys, folds, expected):
    make_competition(tmp_path, n_train=12, n_test=4)
    ids = pd.read_csv(tmp_path / "data/synth/train.csv")["id"]
    path = tmp_path / "runs/synth/folds.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame({"id": ids, "fold": [folds[i % 2] for i in range(len(ids))]}).to_csv(path, index=False)
    assert_stops_before_training(train(tmp_path, capsys), tmp_path, f"{path}: ", expected, "line 3")


def test_a_read_only_runs_folder_is_named(tmp_path, capsys):
    make_competition(tmp_path, n_train=12, n_test=4)
    # /sys cannot be written, not even by root (for whom chmod changes nothing): runs/ on a read-only mount
    (tmp_path / "runs").symlink_to("/sys/kernel")
    assert_stops_before_training(train(tmp_path, capsys), tmp_path, f"cannot write to {tmp_path / 'runs/synth'} (")


def test_a_fake_safetensors_file_is_named(tmp_path, capsys):
    make_competition(tmp_path, n_train=12, n_test=4)
    (tmp_path / "fake.safetensors").write_bytes(b"not a safetensors file at all")
    err = train(tmp_path, capsys, "model.weights=fake.safetensors")
    assert_stops_before_training(err, tmp_path, f"model.weights: {tmp_path / 'fake.safetensors'} is not a safetensors file")


def test_an_image_error_in_a_dataloader_worker_is_one_line(tmp_path, capsys):
    """A file that goes bad during training (checked fine before) fails in a worker process: one line, no worker traceback."""
    dataset = ImageDataset([tmp_path / "gone.png"], None, A.Compose([]))

    def main():
        for _ in torch.utils.data.DataLoader(dataset, num_workers=1):
            pass

    with pytest.raises(SystemExit):
        run_cli(main)
    assert capsys.readouterr().err == f"error: cannot read image {tmp_path / 'gone.png'}: file is missing\n"


@pytest.mark.parametrize("kind", ["jpg", "png"])
def test_a_truncated_image_is_refused_not_decoded_grey(tmp_path, kind):
    make_competition(tmp_path, n_train=6, n_test=2)
    path = tmp_path / f"data/synth/train/s002.{kind}"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    _truncate(path)
    for read in (read_image, read_header):
        with pytest.raises(SolverError, match=rf"cannot read image .*s002\.{kind}: the file is truncated \(image file is truncated"):
            read(path)
    # check-data too, which decodes every image
    path.replace(tmp_path / "data/synth/train/s002.png")
    report = check_data(Competition.load(tmp_path, "synth"))
    assert len(report.problems) == 1 and "train images that do not decode" in report.problems[0] and "s002.png" in report.problems[0]


def test_bytes_after_the_end_marker_are_not_truncation(tmp_path):
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), np.zeros((16, 16, 3), np.uint8))
    path.write_bytes(path.read_bytes() + b"trailer written by a camera")
    assert read_image(path).shape == (16, 16, 3) and read_header(path) == (16, 16, 3)


@pytest.mark.parametrize(
    "name, image",
    [
        ("gray.png", np.zeros((8, 6), np.uint8)),
        ("rgb.png", np.zeros((8, 6, 3), np.uint8)),
        ("rgba.png", np.zeros((8, 6, 4), np.uint8)),
        ("gray.jpg", np.zeros((8, 6), np.uint8)),
        ("rgb.jpg", np.zeros((8, 6, 3), np.uint8)),
        ("progressive.jpg", np.zeros((8, 6, 3), np.uint8)),
        ("rgb.bmp", np.zeros((8, 6, 3), np.uint8)),
        ("gray16.png", np.zeros((8, 6), np.uint16)),
        ("palette.png", None),
    ],
)
def test_the_header_says_what_decoding_gives(tmp_path, name, image):
    path = tmp_path / name
    if image is None:
        Image.fromarray(np.zeros((8, 6), np.uint8)).convert("P").save(path)  # OpenCV expands a palette to 3 channels
    else:
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if name.startswith("progressive") else [])
    try:
        expected = read_image(path).shape
    except SolverError as err:  # the same error then
        with pytest.raises(SolverError, match=re.escape(str(err))):
            read_header(path)
    else:
        assert read_header(path) == expected


def test_a_sixteen_bit_colour_png_is_refused_by_its_header(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((8, 6, 3), np.uint16))  # Pillow opens it as 8-bit RGB; the PNG header says 16
    for read in (read_image, read_header):
        with pytest.raises(SolverError, match="a.png has dtype uint16; only 8-bit"):
            read(path)
