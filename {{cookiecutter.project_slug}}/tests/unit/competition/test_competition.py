import numpy as np
import pandas as pd
import pytest

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.train.experiment import load_experiment
from tests.synthetic import make_competition


def test_missing_train_csv_names_the_file(tmp_path):
    make_competition(tmp_path)
    (tmp_path / "data/synth/train.csv").unlink()
    with pytest.raises(SolverError, match=r"train file not found: .*data/synth/train\.csv"):
        Competition.load(tmp_path, "synth").read_train()


def test_missing_sample_submission_fails_before_training(tmp_path):
    make_competition(tmp_path)
    (tmp_path / "data/synth/sample_submission.csv").unlink()
    with pytest.raises(SolverError, match=r"sample submission not found: .*sample_submission\.csv"):
        load_experiment(tmp_path, "synth", "tiny")


def test_unknown_competition_lists_the_ones_there(tmp_path):
    make_competition(tmp_path)
    with pytest.raises(SolverError, match="competitions here: synth"):
        Competition.load(tmp_path, "synthh")


@pytest.mark.parametrize("key, value", [("id_column", "image_id"), ("target", "species")])
def test_missing_column_lists_columns_found(tmp_path, key, value):
    make_competition(tmp_path, **{key: value})
    with pytest.raises(SolverError) as err:
        Competition.load(tmp_path, "synth").read_train()
    assert f"'{value}' not found" in str(err.value) and "columns found: 'id', 'label'" in str(err.value)


def test_missing_image_is_named(tmp_path):
    make_competition(tmp_path)
    (tmp_path / "data/synth/train/s005.png").unlink()
    with pytest.raises(SolverError, match=r"1 listed image\(s\) not found, e\.g\. .*train/s005\.png \(id 's005'\)"):
        load_experiment(tmp_path, "synth", "tiny")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("cache", [True, False])
def test_unreadable_image_is_named(tmp_path, cache):
    from solver.train.run import train_experiment

    make_competition(tmp_path)
    (tmp_path / "data/synth/train/s003.png").write_bytes(b"not a png")
    with pytest.raises(SolverError, match=r"cannot read image .*train/s003\.png: not a readable image"):
        train_experiment(tmp_path, "synth", "tiny", folds=[0, 1], overrides=[f"data.cache_images={cache}", "train.epochs=1"])


def test_label_outside_declared_classes_names_row(tmp_path):
    make_competition(tmp_path, classes=["cat", "dog"])
    with pytest.raises(SolverError, match=r"row 4 has label 'fox'"):
        comp = Competition.load(tmp_path, "synth")
        comp.encode_targets(comp.read_train())


def test_integer_labels_sort_numerically(tmp_path):
    make_competition(tmp_path, labels=["2", "10", "1"])
    comp = Competition.load(tmp_path, "synth")
    assert comp.classes == ["1", "2", "10"]
    y = comp.encode_targets(comp.read_train())
    assert y.dtype == np.int64 and set(y) == {0, 1, 2}


@pytest.mark.parametrize("fmt", ["space", "columns"])
def test_multilabel_targets_encode_to_a_binary_matrix(tmp_path, fmt):
    make_competition(tmp_path, task="multilabel", multilabel_format=fmt)
    comp = Competition.load(tmp_path, "synth")
    train = comp.read_train()
    y = comp.encode_targets(train)
    assert y.shape == (len(train), 4) and set(np.unique(y)) <= {0.0, 1.0}
    if fmt == "space":
        first = train["Target"].iloc[0].split()
        assert [comp.classes[j] for j in np.flatnonzero(y[0])] == first


def test_binary_columns_reject_other_values(tmp_path):
    make_competition(tmp_path, task="multilabel", multilabel_format="columns")
    path = tmp_path / "data/synth/train.csv"
    df = pd.read_csv(path)
    df.loc[2, "1"] = 7
    df.to_csv(path, index=False)
    comp = Competition.load(tmp_path, "synth")
    with pytest.raises(SolverError, match="column '1' row 4 is '7'"):
        comp.encode_targets(comp.read_train())


def test_image_pattern_may_only_use_id(tmp_path):
    make_competition(tmp_path, image_pattern="{image_id}.png")
    with pytest.raises(SolverError, match=r"image_pattern: '\{image_id\}.png' may use only \{id\}"):
        Competition.load(tmp_path, "synth")


@pytest.mark.parametrize("classes, message", [(["cat", "dog", "cat"], "'cat' is listed twice"), ([True, False], "quote labels like yes")])
def test_bad_class_lists_are_refused(tmp_path, classes, message):
    make_competition(tmp_path, classes=classes)
    with pytest.raises(SolverError, match=message):
        Competition.load(tmp_path, "synth")


def test_binary_columns_accept_numbers_written_as_floats(tmp_path):
    make_competition(tmp_path, task="multilabel", multilabel_format="columns")
    path = tmp_path / "data/synth/train.csv"
    df = pd.read_csv(path)
    df[["0", "1"]] = df[["0", "1"]].astype(float)
    df.to_csv(path, index=False)
    comp = Competition.load(tmp_path, "synth")
    assert set(np.unique(comp.encode_targets(comp.read_train()))) <= {0.0, 1.0}


def test_images_with_another_channel_count_are_named(tmp_path):
    import cv2

    from solver.train.run import train_experiment

    make_competition(tmp_path)
    cv2.imwrite(str(tmp_path / "data/synth/train/s004.png"), np.zeros((32, 32), np.uint8))
    with pytest.raises(SolverError, match=r"different channel counts: 1 with 1 channel\(s\), e\.g\. .*s004\.png, 63 with 3"):
        train_experiment(tmp_path, "synth", "tiny", overrides=["data.cache_images=false"])
    assert not (tmp_path / "runs").exists()  # before training: not even the folds file


def test_duplicate_ids_are_refused(tmp_path):
    make_competition(tmp_path)
    path = tmp_path / "data/synth/train.csv"
    df = pd.read_csv(path)
    df.loc[1, "id"] = df.loc[0, "id"]
    df.to_csv(path, index=False)
    with pytest.raises(SolverError, match="duplicates, e.g. 's000'"):
        Competition.load(tmp_path, "synth").read_train()


@pytest.mark.parametrize("key", ["metric", "submission.function"])
@pytest.mark.parametrize("where", ["../outside.py", "absolute"])
def test_custom_code_outside_the_competition_folder_is_refused_unrun(tmp_path, key, where):
    """make package ships the competition folder: code elsewhere would be missing from it, and is never run."""
    from solver.train.plan import write_plan

    outside = tmp_path / "outside.py"
    marker = tmp_path / "ran"
    outside.write_text(f"open({str(marker)!r}, 'w').write('x')\ndef score(y, p):\n    return 0.0\ndef make_submission(p, c, s):\n    return s\n")
    spec = f"{outside if where == 'absolute' else where}:{'score' if key == 'metric' else 'make_submission'}"
    contract = {"metric": spec, "greater_is_better": True} if key == "metric" else {"submission": {"function": spec}}
    make_competition(tmp_path, **contract)
    for load in (lambda: Competition.load(tmp_path, "synth"), lambda: write_plan(tmp_path, "synth", "tiny")):
        with pytest.raises(SolverError) as err:
            load()
        message = str(err.value)
        assert f"{key} '{spec}' is outside the competition folder {tmp_path / 'synth'}" in message and "competition.yaml" in message
    assert not marker.exists()


def test_custom_code_in_a_subfolder_of_the_competition_is_fine(tmp_path):
    make_competition(tmp_path, metric="code/metric.py:score", greater_is_better=True)
    (tmp_path / "synth/code").mkdir()
    (tmp_path / "synth/code/metric.py").write_text("def score(y, p):\n    return 0.5\n")
    assert Competition.load(tmp_path, "synth").metric(np.zeros(2), np.zeros((2, 3))) == 0.5
