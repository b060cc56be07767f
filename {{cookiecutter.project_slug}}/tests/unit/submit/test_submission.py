import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.competition.submission_format import build_submission, validate_submission
from solver.submit.submission import kaggle_submit, make_submission
from tests.conftest import solver_command
from tests.synthetic import make_competition
from tests.unit.competition.test_download import CREDENTIALS, fake_kaggle, give_credentials, no_credentials


def fake_test_predictions(comp: Competition, source_dir, seed=0) -> pd.DataFrame:
    test = comp.read_test()
    probs = np.random.default_rng(seed).dirichlet(np.ones(comp.num_classes), len(test))
    df = pd.DataFrame(probs, columns=comp.classes)
    df.insert(0, "id", test["id"].to_numpy()[::-1])  # another order than the sample's
    source_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(source_dir / "test.csv", index=False)
    return df


@pytest.mark.parametrize(
    "task, fmt, extra",
    [
        ("multiclass", "label", {}),
        ("multiclass", "probabilities", {}),
        ("multilabel", "labels", {}),
        ("multilabel", "binary_columns", {"multilabel_format": "columns"}),
    ],
)
def test_each_format_is_built_in_sample_order_and_valid(tmp_path, task, fmt, extra):
    make_competition(tmp_path, task=task, submission={"format": fmt}, **extra)
    comp = Competition.load(tmp_path, "synth")
    sample = comp.read_sample_submission()
    if fmt == "probabilities":  # the sample of a log-loss competition has one column per class
        sample = pd.DataFrame({"id": sample["id"], **{c: 0.5 for c in comp.classes}})
        sample.to_csv(comp.data_dir / "sample_submission.csv", index=False)
    fake_test_predictions(comp, tmp_path / "runs/synth/e")
    path = make_submission(comp, tmp_path / "runs/synth/e")
    sub = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(sub.columns) == list(sample.columns)
    assert (sub["id"] == sample["id"]).all()


def test_label_is_the_argmax_class(tmp_path):
    make_competition(tmp_path)
    comp = Competition.load(tmp_path, "synth")
    preds = fake_test_predictions(comp, tmp_path / "runs/synth/e")
    sub = build_submission(comp, preds, comp.read_sample_submission())
    expected = preds.set_index("id").loc[sub["id"], comp.classes].to_numpy().argmax(1)
    assert sub["label"].tolist() == [comp.classes[k] for k in expected]


def test_threshold_decides_multilabel_labels(tmp_path):
    make_competition(tmp_path, task="multilabel", submission={"threshold": 0.3})
    comp = Competition.load(tmp_path, "synth")
    sample = comp.read_sample_submission()
    preds = pd.DataFrame({"id": sample["id"], "0": 0.31, "1": 0.29, "2": 0.9, "3": 0.0})
    sub = build_submission(comp, preds, sample)
    assert set(sub["Target"]) == {"0 2"}


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda s: s.iloc[::-1].reset_index(drop=True), "ids differ from the sample's at row 2"),
        (lambda s: s.iloc[:-1], "rows, the sample has"),
        (lambda s: s.assign(label=s["label"].where(s.index != 3)), r"NaN\) in column\(s\) \['label'\], first at row 5"),
        (lambda s: s.assign(label="wolf"), "label 'wolf', which is not a class"),
        (lambda s: s.rename(columns={"label": "Label"}), "missing \\['label'\\], extra \\['Label'\\]"),
    ],
)
def test_invalid_submission_is_refused_with_the_reason(tmp_path, corrupt, message):
    make_competition(tmp_path)
    comp = Competition.load(tmp_path, "synth")
    sample = comp.read_sample_submission()
    good = build_submission(comp, fake_test_predictions(comp, tmp_path / "runs/synth/e"), sample)
    validate_submission(good, sample, comp)
    with pytest.raises(SolverError, match=message):
        validate_submission(corrupt(good), sample, comp)


def test_refused_submission_writes_nothing_and_keeps_the_old_one(tmp_path):
    make_competition(tmp_path)
    comp = Competition.load(tmp_path, "synth")
    source = tmp_path / "runs/synth/e"
    fake_test_predictions(comp, source)
    path = make_submission(comp, source)
    before = path.read_bytes()
    sample = comp.read_sample_submission()
    sample.assign(weight=1).to_csv(comp.data_dir / "sample_submission.csv", index=False)  # a column we do not write
    with pytest.raises(SolverError, match=r"(?s)submission refused, nothing written.*missing \['weight'\]"):
        make_submission(Competition.load(tmp_path, "synth"), source)
    assert path.read_bytes() == before
    sample.assign(id="x" + sample["id"]).to_csv(comp.data_dir / "sample_submission.csv", index=False)  # ids we never predicted
    with pytest.raises(SolverError, match="test predictions lack 16 id"):
        make_submission(Competition.load(tmp_path, "synth"), source)
    assert path.read_bytes() == before


def test_missing_source_is_a_clear_error(tmp_path):
    make_competition(tmp_path)
    with pytest.raises(SolverError, match="no test predictions for nope"):
        make_submission(Competition.load(tmp_path, "synth"), tmp_path / "runs/synth/nope")


def test_prediction_column_defaults_to_the_samples_only_column(tmp_path):
    make_competition(tmp_path, task="multilabel")
    comp = Competition.load(tmp_path, "synth")
    sample = comp.read_sample_submission().rename(columns={"Target": "Predicted"})  # Human Protein Atlas
    sample.to_csv(comp.data_dir / "sample_submission.csv", index=False)
    fake_test_predictions(comp, tmp_path / "runs/synth/e")
    sub = pd.read_csv(make_submission(comp, tmp_path / "runs/synth/e"), dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["id", "Predicted"]


def test_probability_columns_follow_the_samples_order(tmp_path):
    labels = [f"Class_{i}" for i in range(1, 11)]
    make_competition(tmp_path, labels=labels, n_train=60, submission={"format": "probabilities"})
    comp = Competition.load(tmp_path, "synth")
    sample = pd.DataFrame({"id": comp.read_sample_submission()["id"], **{c: 0.1 for c in labels}})  # Class_1, Class_2, ... Class_10
    sample.to_csv(comp.data_dir / "sample_submission.csv", index=False)
    assert comp.classes != labels  # sorted as text: Class_1, Class_10, Class_2, ...
    fake_test_predictions(comp, tmp_path / "runs/synth/e")
    assert list(pd.read_csv(make_submission(comp, tmp_path / "runs/synth/e")).columns) == ["id", *labels]


def test_a_format_that_cannot_fit_the_sample_fails_before_training(tmp_path):
    from solver.train.experiment import load_experiment

    make_competition(tmp_path, submission={"format": "probabilities"})  # the sample has one label column
    with pytest.raises(SolverError, match=r"no column for label\(s\) \['cat', 'dog', 'fox'\] of the 'probabilities' submission format"):
        load_experiment(tmp_path, "synth", "tiny")


def test_custom_submission_function_must_exist(tmp_path):
    make_competition(tmp_path, submission={"function": "submission.py:make_submission"})
    comp = Competition.load(tmp_path, "synth")
    fake_test_predictions(comp, tmp_path / "runs/synth/e")
    with pytest.raises(SolverError, match=r"submission.function 'submission.py:make_submission': .*submission.py not found"):
        make_submission(comp, tmp_path / "runs/synth/e")


def test_custom_submission_function(tmp_path):
    make_competition(tmp_path, submission={"function": "submission.py:make_submission"})
    (tmp_path / "synth" / "submission.py").write_text(
        "def make_submission(test_probs, classes, sample):\n"
        "    out = sample.copy()\n"
        "    best = test_probs.set_index('id').loc[sample['id'], classes].to_numpy().argmin(1)\n"
        "    out['label'] = [classes[k] for k in best]\n"
        "    return out\n"
    )
    comp = Competition.load(tmp_path, "synth")
    preds = fake_test_predictions(comp, tmp_path / "runs/synth/e")
    path = make_submission(comp, tmp_path / "runs/synth/e")
    sub = pd.read_csv(path, dtype=str)
    worst = preds.set_index("id").loc[sub["id"], comp.classes].to_numpy().argmin(1)
    assert sub["label"].tolist() == [comp.classes[k] for k in worst]


def test_submit_records_a_ledger_row_and_kaggle_gets_the_cv(repo, tmp_path, monkeypatch):
    make_competition(tmp_path, kaggle_slug="synth-comp")
    comp = Competition.load(tmp_path, "synth")
    source = tmp_path / "runs/synth/e"
    fake_test_predictions(comp, source)
    (source / "score.json").write_text(json.dumps({"kind": "experiment", "metric": "accuracy", "cv": 0.91234, "holdout": None}))
    run = lambda *extra: subprocess.run(  # noqa: E731
        solver_command("submit", "--root", str(tmp_path), "--comp", "synth", "--source", "e", *extra),
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path), "KAGGLE_USERNAME": "", "KAGGLE_KEY": ""},
    )
    first = run()
    assert first.returncode == 0, first.stderr
    ledger = pd.read_csv(tmp_path / "runs/synth/submissions.csv")
    assert ledger[["source", "cv", "kaggle"]].values.tolist() == [["e", 0.91234, False]]
    no_cli = run("--kaggle")
    assert no_cli.returncode == 2 and "kaggle CLI is not installed" in no_cli.stderr
    calls = fake_kaggle(tmp_path, monkeypatch)
    no_credentials = subprocess.run(
        solver_command("submit", "--root", str(tmp_path), "--comp", "synth", "--source", "e", "--kaggle"),
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert no_credentials.returncode == 2 and "no Kaggle credentials" in no_credentials.stderr
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    ok = subprocess.run(
        solver_command("submit", "--root", str(tmp_path), "--comp", "synth", "--source", "e", "--kaggle"),
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "competitions submit -c synth-comp -f" in calls.read_text() and "-m e CV accuracy 0.91234" in calls.read_text()
    assert pd.read_csv(tmp_path / "runs/synth/submissions.csv")["kaggle"].tolist() == [False, False, False, True]


@pytest.mark.parametrize("kind", CREDENTIALS)
def test_every_kind_of_kaggle_credentials_submits(tmp_path, monkeypatch, kind):
    make_competition(tmp_path, kaggle_slug="synth-comp")
    calls = fake_kaggle(tmp_path, monkeypatch)
    no_credentials(tmp_path, monkeypatch)
    give_credentials(kind, tmp_path, monkeypatch)
    assert kaggle_submit(Competition.load(tmp_path, "synth"), tmp_path / "sub.csv", "exp001") == "Successfully submitted"
    assert calls.read_text().startswith("competitions submit -c synth-comp -f")


def test_credentials_the_cli_refuses_at_submit_are_one_line(tmp_path, monkeypatch):
    make_competition(tmp_path, kaggle_slug="synth-comp")
    fake_kaggle(tmp_path, monkeypatch)
    no_credentials(tmp_path, monkeypatch)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "expired")
    with pytest.raises(SolverError) as err:
        kaggle_submit(Competition.load(tmp_path, "synth"), tmp_path / "sub.csv", "exp001")
    message = str(err.value)
    assert message.startswith("kaggle competitions submit -c synth-comp: the kaggle CLI did not accept the Kaggle credentials (You must authenticate")
    assert "\n" not in message and "~/.kaggle/access_token" in message


def test_unknown_source_lists_the_sources(repo, tmp_path):
    make_competition(tmp_path)
    comp = Competition.load(tmp_path, "synth")
    fake_test_predictions(comp, tmp_path / "runs/synth/exp9")
    result = subprocess.run(solver_command("submit", "--root", str(tmp_path), "--comp", "synth", "--source", "exp1"), capture_output=True, text=True)
    assert result.returncode == 2 and "sources with test predictions: exp9" in result.stderr


FORMATS = [
    ("multiclass", "label", {}),
    ("multiclass", "probabilities", {}),
    ("multilabel", "labels", {}),
    ("multilabel", "binary_columns", {"multilabel_format": "columns"}),
    ("multiclass", "label", {"submission": {"function": "submission.py:make_submission"}}),
]


@pytest.mark.parametrize("task, fmt, extra", FORMATS)
def test_nan_or_infinite_probabilities_are_refused_in_every_format(tmp_path, task, fmt, extra):
    """argmax picks a NaN column and a NaN is above no threshold: such predictions never become a submission."""
    extra = {"submission": {"format": fmt}, **extra}
    make_competition(tmp_path, task=task, **extra)
    (tmp_path / "synth/submission.py").write_text("def make_submission(test_probs, classes, sample):\n    return sample\n")
    comp = Competition.load(tmp_path, "synth")
    source = tmp_path / "runs/synth/e"
    preds = fake_test_predictions(comp, source)
    first, second = comp.classes[0], comp.classes[-1]
    preds.loc[[2, 5, 6], first] = np.nan
    preds.loc[9, second] = np.inf
    preds.to_csv(source / "test.csv", index=False)
    ids = preds["id"][[2, 5, 6, 9]].tolist()
    with pytest.raises(SolverError) as err:
        make_submission(comp, source)
    message = str(err.value)
    assert message.startswith(f"{source / 'test.csv'}: 4 row(s) with NaN or infinite probabilities in column(s) {[first, second]}")
    assert "ids " + ", ".join(map(repr, ids)) in message and "rerun" in message
    assert not (source / "submission.csv").exists()


def test_probabilities_that_are_not_numbers_are_refused(tmp_path):
    make_competition(tmp_path)
    comp = Competition.load(tmp_path, "synth")
    source = tmp_path / "runs/synth/e"
    preds = fake_test_predictions(comp, source).astype({"dog": object})
    preds.loc[1, "dog"] = "0.3x"
    preds.to_csv(source / "test.csv", index=False)
    with pytest.raises(SolverError, match=r"test\.csv: column 'dog' line 3 is '0\.3x', not a number"):
        make_submission(comp, source)


def test_a_multilabel_row_without_a_label_is_submitted_and_counted(tmp_path, capsys):
    make_competition(tmp_path, task="multilabel")
    comp = Competition.load(tmp_path, "synth")
    source = tmp_path / "runs/synth/e"
    preds = fake_test_predictions(comp, source)
    preds.loc[[0, 3], comp.classes] = 0.01  # below the threshold everywhere
    preds.loc[~preds.index.isin([0, 3]), comp.classes[0]] = 0.9
    preds.to_csv(source / "test.csv", index=False)
    sub = pd.read_csv(make_submission(comp, source), dtype=str, keep_default_na=False).set_index("id")
    assert (sub.loc[preds["id"][[0, 3]], "Target"] == "").all()
    out = capsys.readouterr().out
    assert f"note: 2 of {len(sub)} rows get no label" in out and repr(preds["id"][0]) in out
