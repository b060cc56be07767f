import subprocess

import cv2
import numpy as np
import pandas as pd
import yaml

from solver.competition.check_data import check_data
from solver.competition.contract import Competition
from tests.conftest import solver_command
from tests.synthetic import make_competition


def check(repo, root, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(solver_command("check-data", "--root", str(root), "--comp", "synth", *extra), capture_output=True, text=True)


def test_clean_data_passes(tmp_path):
    make_competition(tmp_path, n_train=12, n_test=4)
    report = check_data(Competition.load(tmp_path, "synth"))
    assert report.problems == []
    assert {"train: 12 rows", "test: 4 rows", "16 samples decoded, 3 channel(s)"} <= set(report.summary)


def test_every_problem_is_reported_in_one_run(repo, tmp_path):
    make_competition(tmp_path, n_train=12, n_test=4, classes=["cat", "dog", "fox"], group_column="patient")
    data = tmp_path / "data/synth"
    train = pd.read_csv(data / "train.csv", dtype=str)
    train.loc[5, "id"] = "s003"  # duplicate of line 5
    train.loc[7, "label"] = "wolf"  # not in classes
    train.loc[8, "label"] = None  # empty label
    train.to_csv(data / "train.csv", index=False)
    test = pd.read_csv(data / "test.csv", dtype=str)
    test.loc[1, "id"] = "t999"  # not in the sample submission, and no image
    test.to_csv(data / "test.csv", index=False)
    (data / "train/s010.png").write_bytes(b"not a png")  # unreadable
    cv2.imwrite(str(data / "train/s011.png"), np.zeros((32, 32), np.uint8))  # one channel, the others three
    result = check(repo, tmp_path)
    assert result.returncode == 2
    err = result.stderr
    assert "error: 9 problem(s) in " in err
    assert "'patient' not found (declared as 'group_column'" in err
    assert "duplicate ids in column 'id' (1 row(s))" in err and "train.csv line 5: id 's003' also on line(s) 7" in err
    assert "labels absent from the class list" in err and "train.csv line 9: label(s) 'wolf'" in err
    assert "empty label in column 'label'" in err and "train.csv line 10: no label" in err
    assert "test ids absent from sample_submission.csv" in err and "test.csv line 3: 't999'" in err
    assert "sample submission ids absent from test.csv" in err and "sample_submission.csv line 3: 's013'" in err
    assert "test images missing: " in err and "1 listed image(s) not found, e.g. " in err and "t999.png not found" in err
    assert "train images that do not decode" in err and "train.csv line 12: cannot read image" in err and "s010.png: not a readable image" in err
    assert "have different channel counts: 1 with 1 channel(s), e.g." in err and "s011.png, 13 with 3 channel(s)" in err
    assert "Traceback" not in err


def test_missing_file_and_column_are_reported_with_the_images(tmp_path):
    make_competition(tmp_path, n_train=12, n_test=4)
    data = tmp_path / "data/synth"
    (data / "test.csv").unlink()
    pd.read_csv(data / "sample_submission.csv").rename(columns={"label": "prediction", "id": "Id"}).assign(x=1).to_csv(
        data / "sample_submission.csv", index=False
    )
    (data / "train/s002.png").unlink()
    report = check_data(Competition.load(tmp_path, "synth"), decode=False)
    assert len(report.problems) == 4, report.problems
    err = "\n".join(report.problems)
    assert "test file not found:" in err and "test.csv" in err
    assert "sample_submission.csv: column(s) 'id' not found (declared as 'id_column'" in err
    assert "no column for the 'label' submission format; set submission.column" in err
    assert "train images missing: " in err and "(id 's002') (1 row(s))" in err and "train.csv line 4:" in err and "s002.png not found" in err


def test_binary_columns_and_channel_files(tmp_path):
    make_competition(tmp_path, task="multilabel", multilabel_format="columns", n_train=8, n_test=2)
    data = tmp_path / "data/synth"
    train = pd.read_csv(data / "train.csv", dtype=str)
    train.loc[2, "1"] = "2"
    train.to_csv(data / "train.csv", index=False)
    report = check_data(Competition.load(tmp_path, "synth"))
    assert report.problems == [f"0/1 label column '1' holds other values (1 row(s)):\n    {data / 'train.csv'} line 4: '2'"]

    # one grayscale file per channel: each file of each sample is checked
    cfg = yaml.safe_load((tmp_path / "synth/competition.yaml").read_text())
    cfg["image_channels"] = ["{id}_red.png", "{id}_green.png"]
    (tmp_path / "synth/competition.yaml").write_text(yaml.safe_dump(cfg))
    for split in ("train", "test"):
        for path in (data / split).glob("*.png"):
            for channel in ("red", "green"):
                cv2.imwrite(str(path.with_name(f"{path.stem}_{channel}.png")), np.zeros((8, 8), np.uint8))
    (data / "train/s001_green.png").unlink()
    cv2.imwrite(str(data / "test/s009_red.png"), np.zeros((8, 8, 3), np.uint8))  # a colour file where one channel belongs
    train.loc[2, "1"] = "1"
    train.to_csv(data / "train.csv", index=False)
    report = check_data(Competition.load(tmp_path, "synth"))
    assert len(report.problems) == 2, report.problems
    assert "train images missing" in report.problems[0] and "s001_green.png not found" in report.problems[0]
    assert "test images that do not decode" in report.problems[1] and "s009_red.png has 3 channels" in report.problems[1]


def test_probability_submission_needs_a_column_per_class(tmp_path):
    make_competition(tmp_path, n_train=6, n_test=2, submission={"format": "probabilities"})  # the sample has one label column
    report = check_data(Competition.load(tmp_path, "synth"), decode=False)
    assert report.problems == [
        f"{tmp_path / 'data/synth/sample_submission.csv'}: no column for label(s) ['cat', 'dog', 'fox'] of the 'probabilities' submission format"
    ]


def test_train_without_rows_or_without_any_label_is_reported(tmp_path):
    make_competition(tmp_path, task="multilabel", multilabel_format="columns", n_train=8, n_test=2)
    path = tmp_path / "data/synth/train.csv"
    train = pd.read_csv(path)
    train.assign(**{c: 0 for c in ["0", "1", "2", "3"]}).to_csv(path, index=False)
    report = check_data(Competition.load(tmp_path, "synth"), decode=False)
    assert report.problems == [f"{path}: no row has any label: every 0/1 column ('0', '1', '2', '3') is 0; nothing to learn"]
    train.iloc[:0].to_csv(path, index=False)
    report = check_data(Competition.load(tmp_path, "synth"), decode=False)
    assert report.problems == [f"{path}: no rows (only a header): nothing to train on; is it the competition's train.csv?"]


def test_check_data_reads_headers_on_request_and_finds_the_same_problems(tmp_path):
    make_competition(tmp_path, n_train=12, n_test=4)
    data = tmp_path / "data/synth"
    (data / "train/s010.png").write_bytes(b"not a png")
    cv2.imwrite(str(data / "train/s011.png"), np.zeros((32, 32), np.uint8))
    cv2.imwrite(str(data / "test/s013.png"), np.zeros((32, 32, 3), np.uint16))
    comp = Competition.load(tmp_path, "synth")
    assert check_data(comp, decode="header").problems == check_data(comp, decode=True).problems
    assert len(check_data(comp, decode=True).problems) == 3
