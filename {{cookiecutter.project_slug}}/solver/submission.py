"""Test probabilities -> the competition's submission format, validated against sample_submission.csv.

A submission is written only after it passes every check; otherwise nothing is written and the error
lists what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from solver.atomic import write_csv
from solver.competition import Competition, read_csv
from solver.custom import load_function
from solver.errors import SolverError
from solver.provenance import git_sha

SHOWN = 5  # ids named in a message; the rest are counted


def build_submission(
    comp: Competition, test_probs: pd.DataFrame, sample: pd.DataFrame, threshold: float | None = None, source: str = "the test predictions"
) -> pd.DataFrame:
    """Rows in sample_submission's order, columns in the competition's format.

    threshold: where multilabel probabilities are cut (default submission.threshold); a thresholds source
    (make adapt) stores per-label decision-scale probabilities and records its own cut in its config.yaml.
    source: where test_probs come from, for the error message.
    """
    id_col, classes, spec = comp.cfg.id_column, comp.classes, comp.cfg.submission
    threshold = spec.threshold if threshold is None else threshold
    check_finite(test_probs, classes, id_col, source)
    if spec.function:
        make = load_function(
            spec.function, comp.folder, "make_submission", "submission.function", "(test_probs, classes, sample_submission) -> DataFrame"
        )
        return make(test_probs, classes, sample)
    missing = sorted(set(sample[id_col]) - set(test_probs[id_col]))
    if missing:
        raise SolverError(f"test predictions lack {len(missing)} id(s) of the sample submission, e.g. {missing[0]!r}; is test.csv the competition's?")
    probs = test_probs.set_index(id_col).loc[sample[id_col], classes].to_numpy()
    sub = pd.DataFrame({id_col: sample[id_col].to_numpy()})
    column = prediction_column(comp, sample)
    fmt = comp.cfg.submission_format
    if fmt == "label":
        sub[column] = np.asarray(classes, dtype=object)[probs.argmax(1)]
    elif fmt == "probabilities":
        for j, c in enumerate(classes):
            sub[c] = probs[:, j]
    elif fmt == "labels":
        chosen = probs > threshold
        sub[column] = [" ".join(c for c, keep in zip(classes, row) if keep) for row in chosen]
    else:  # binary_columns
        for j, c in enumerate(classes):
            sub[c] = (probs[:, j] > threshold).astype(int)
    if set(sub.columns) == set(sample.columns):
        sub = sub[list(sample.columns)]  # the sample's column order (Class_1, Class_2, ... Class_10)
    return sub


def check_finite(probs: pd.DataFrame, classes: list[str], id_col: str, source: str) -> None:
    """No NaN or infinity in any format: argmax picks a NaN column (a label submission looks valid) and a NaN is above
    no threshold (a multilabel row silently gets no label). They come from a diverged model or a broken stage."""
    bad = ~np.isfinite(probs[classes].to_numpy(dtype=float))
    rows = np.flatnonzero(bad.any(1))
    if len(rows):
        columns = [c for c, any_bad in zip(classes, bad.any(0)) if any_bad]
        ids = ", ".join(map(repr, probs[id_col].iloc[rows[:SHOWN]])) + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else "")
        raise SolverError(
            f"{source}: {len(rows)} row(s) with NaN or infinite probabilities in column(s) {columns}, ids {ids}; "
            "nothing written: rerun the stage that made them (a diverged model? look at its loss curve)"
        )


def _numbers(probs: pd.DataFrame, classes: list[str], path: Path) -> pd.DataFrame:
    """The class columns of a predictions file as floats; text that is not a number is refused, named."""
    values = probs[classes].apply(pd.to_numeric, errors="coerce")
    text = (values.isna() & probs[classes].notna() & ~probs[classes].isin(["nan", "NaN", "-nan"])).to_numpy()
    if text.any():
        row, col = np.argwhere(text)[0]
        raise SolverError(
            f"{path}: column '{classes[col]}' line {row + 2} is {probs[classes].iat[row, col]!r}, not a number; rerun the stage that wrote it"
        )
    return values


def _note_rows_without_labels(comp: Competition, sub: pd.DataFrame, threshold: float | None) -> None:
    """Multilabel rows with no probability above the threshold get no label. Kept: that is the right answer for a
    sample without any label, and Kaggle scores an empty prediction; but it is said, with a way out for competitions
    where every sample has one."""
    fmt, id_col = comp.cfg.submission_format, comp.cfg.id_column
    if comp.cfg.submission.function or fmt not in ("labels", "binary_columns"):
        return
    labels = sub.drop(columns=id_col)
    empty = (labels.iloc[:, 0].fillna("").str.strip() == "") if fmt == "labels" else (labels.astype(int) == 0).all(axis=1)
    if empty.any():
        ids = ", ".join(map(repr, sub.loc[empty, id_col].iloc[:SHOWN]))
        cut = comp.cfg.submission.threshold if threshold is None else threshold
        print(
            f"note: {int(empty.sum())} of {len(sub)} rows get no label (no probability above {cut}), e.g. ids {ids}; kept, as Kaggle "
            "scores an empty prediction; if every sample has a label, submit a thresholds source with at_least_one: true (make adapt)"
        )


def prediction_column(comp: Competition, sample: pd.DataFrame) -> str | None:
    """The column of label/labels formats: submission.column, else the target column if the sample has it,
    else the sample's only non-id column (Human Protein Atlas: train 'Target', submission 'Predicted')."""
    if comp.cfg.submission.column:
        return comp.cfg.submission.column
    if isinstance(comp.cfg.target, str) and comp.cfg.target in sample.columns:
        return comp.cfg.target
    others = [c for c in sample.columns if c != comp.cfg.id_column]
    return others[0] if len(others) == 1 else None


def submission_problems(sub: pd.DataFrame, sample: pd.DataFrame, comp: Competition) -> list[str]:
    """Everything that would make Kaggle reject the file or score it wrongly."""
    problems = []
    id_col = comp.cfg.id_column
    if list(sub.columns) != list(sample.columns):
        missing = [c for c in sample.columns if c not in sub.columns]
        extra = [c for c in sub.columns if c not in sample.columns]
        problems.append(f"columns {list(sub.columns)} differ from the sample's {list(sample.columns)} (missing {missing}, extra {extra})")
    if len(sub) != len(sample):
        problems.append(f"{len(sub)} rows, the sample has {len(sample)}")
    if id_col in sub.columns:
        ours, theirs = sub[id_col].astype(str).to_numpy(), sample[id_col].astype(str).to_numpy()
        if len(ours) == len(theirs) and (ours != theirs).any():
            row = int(np.argmax(ours != theirs))
            problems.append(f"ids differ from the sample's at row {row + 2}: {ours[row]!r} vs {theirs[row]!r} (same ids, same order required)")
        elif len(ours) != len(theirs) and set(ours) != set(theirs):
            problems.append(f"ids differ from the sample's ({len(set(theirs) - set(ours))} missing, {len(set(ours) - set(theirs))} unknown)")
    nan_cols = [c for c in sub.columns if sub[c].isna().any()]
    if nan_cols:
        problems.append(f"empty values (NaN) in column(s) {nan_cols}, first at row {int(sub[nan_cols[0]].isna().to_numpy().argmax()) + 2}")
    problems += _label_problems(sub, comp)
    return problems


def _label_problems(sub: pd.DataFrame, comp: Competition) -> list[str]:
    fmt, classes = comp.cfg.submission_format, set(comp.classes)
    column = prediction_column(comp, sub)
    if fmt in ("label", "labels") and column in sub.columns:
        values = sub[column].fillna("").astype(str)
        tokens = values.str.split() if fmt == "labels" else values.map(lambda v: [v])
        for row, labels in enumerate(tokens):
            bad = [t for t in labels if t not in classes]
            if bad:
                return [f"column '{column}' row {row + 2} has label {bad[0]!r}, which is not a class of the competition"]
    if fmt == "probabilities":
        cols = [c for c in comp.classes if c in sub.columns]
        values = sub[cols].to_numpy(dtype=float)
        if ((values < 0) | (values > 1)).any():
            return ["probability columns hold values outside [0, 1]"]
    if fmt == "binary_columns":
        cols = [c for c in comp.classes if c in sub.columns]
        if not sub[cols].isin([0, 1]).to_numpy().all():
            return ["0/1 label columns hold values other than 0 and 1"]
    return []


def validate_submission(sub: pd.DataFrame, sample: pd.DataFrame, comp: Competition) -> None:
    problems = submission_problems(sub, sample, comp)
    if problems:
        sample_path = comp.data_dir / comp.cfg.sample_submission
        raise SolverError(f"submission refused, nothing written (checked against {sample_path}):\n  - " + "\n  - ".join(problems))


def check_submission_format(comp: Competition) -> None:
    """Before training: would predictions of this competition make a valid submission? (uniform dummy probabilities)"""
    sample = comp.read_sample_submission()
    fmt = comp.cfg.submission_format
    if not comp.cfg.submission.function and fmt in ("label", "labels") and prediction_column(comp, sample) is None:
        raise SolverError(
            f"{comp.folder / 'competition.yaml'}: submission format '{fmt}' needs a column; set submission.column "
            f"to one of {[c for c in sample.columns if c != comp.cfg.id_column]}"
        )
    dummy = pd.DataFrame(np.full((len(sample), comp.num_classes), 1 / comp.num_classes), columns=comp.classes)
    dummy.insert(0, comp.cfg.id_column, sample[comp.cfg.id_column].to_numpy())
    try:
        validate_submission(build_submission(comp, dummy, sample), sample, comp)
    except SolverError as err:
        raise SolverError(f"the submission format of {comp.name} does not fit its sample submission: {err}") from None


def make_submission(comp: Competition, source_dir: Path, out_path: Path | None = None) -> Path:
    """Read <source_dir>/test.csv, build and validate the submission, write it atomically."""
    stale = stale_inputs(source_dir)
    if stale:
        raise SolverError(f"{source_dir.name} is stale: {stale}; run its stage again (make ensemble / make lgbm) before submitting it")
    test_path = source_dir / "test.csv"
    if not test_path.is_file():
        raise SolverError(f"{test_path} not found: no test predictions for {source_dir.name}; train all folds (or `make predict`) first")
    test_probs = read_csv(test_path, "test predictions")
    missing = [c for c in comp.classes if c not in test_probs.columns]
    if missing:
        raise SolverError(f"{test_path}: no column for class(es) {missing[:5]}; it was made with another class list")
    test_probs[comp.classes] = _numbers(test_probs, comp.classes, test_path)
    sample = comp.read_sample_submission()
    config_path = source_dir / "config.yaml"
    config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    sub = build_submission(comp, test_probs, sample, config.get("decision_threshold"), source=str(test_path))
    validate_submission(sub, sample, comp)
    _note_rows_without_labels(comp, sub, config.get("decision_threshold"))
    out_path = out_path or source_dir / "submission.csv"
    write_csv(sub, out_path)
    return out_path


def files_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes() if Path(path).is_file() else b"missing")
    return digest.hexdigest()[:16]


def stale_inputs(source_dir: Path) -> str | None:
    """A level-2 source records the hashes of the files it was made from; a changed or missing one makes it stale."""
    config_path = source_dir / "config.yaml"
    if not config_path.is_file():
        return None
    config = yaml.safe_load(config_path.read_text()) or {}
    if config.get("stale"):  # a TTA or kNN source whose folds were retrained since (solver.experiment._mark_derived_stale)
        return str(config["stale"])
    recorded = config.get("input_hashes") or {}
    for relative, digest in recorded.items():
        if stale_inputs(source_dir.parent / relative):
            return f"its input '{relative}' is stale"
        paths = [source_dir.parent / relative / name for name in ("oof.csv", "test.csv")]
        if relative.endswith("/knn"):
            paths = [source_dir.parent / relative / name for name in ("features_oof.csv", "features_test.csv")]
        if files_hash(paths) != digest:
            return f"its input '{relative}' changed since it was made"
    return None


LEDGER_COLUMNS = ["time", "git_sha", "source", "kind", "metric", "cv", "holdout", "file", "sha256", "kaggle"]


def record_submission(comp: Competition, source: str, path: Path, kaggle: bool = False) -> Path:
    """Append a row to runs/<comp>/submissions.csv: what was submitted, from which source, with which CV."""
    score = read_score(comp, source)
    row = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git_sha": git_sha(comp.root),
        "source": source,
        "kind": score.get("kind"),
        "metric": score.get("metric"),
        "cv": score.get("cv"),
        "holdout": score.get("holdout"),
        "file": str(path),
        "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16],
        "kaggle": kaggle,
    }
    ledger = comp.runs_dir / "submissions.csv"
    previous = pd.read_csv(ledger, dtype=str, keep_default_na=False) if ledger.is_file() else pd.DataFrame(columns=LEDGER_COLUMNS)
    write_csv(pd.concat([previous, pd.DataFrame([row])], ignore_index=True), ledger)
    return ledger


def read_score(comp: Competition, source: str) -> dict:
    path = comp.runs_dir / source / "score.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def kaggle_message(comp: Competition, source: str) -> str:
    """'exp001/tta8 CV accuracy 0.99370': the leaderboard later shows what each submission was."""
    score = read_score(comp, source)
    return f"{source} CV {score['metric']} {score['cv']:.5f}" if score.get("cv") is not None else source


KAGGLE_TOKEN_HOWTO = (
    "create an API token (kaggle.com > Settings > API > Generate New Token), then export KAGGLE_API_TOKEN=<token> "
    "or save it in ~/.kaggle/access_token (the legacy kaggle.json in ~/.kaggle or KAGGLE_CONFIG_DIR, "
    "or KAGGLE_USERNAME and KAGGLE_KEY, work too)"
)
# What the kaggle CLI says when it has no credentials it accepts (1.7+: "You must authenticate ..."; older: no kaggle.json)
KAGGLE_AUTH_FAILURES = ("You must authenticate", "Could not find kaggle.json", "Unauthorized")


def kaggle_credentials_present() -> bool:
    """Credentials of any kind the kaggle CLI reads: the API token (KAGGLE_API_TOKEN, ~/.kaggle/access_token), the
    legacy key (KAGGLE_USERNAME and KAGGLE_KEY, kaggle.json in KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle), or,
    with KAGGLE_ENABLE_OAUTH, the CLI's own login (`kaggle auth login`), which only the CLI can check."""
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or env.get("KAGGLE_ENABLE_OAUTH", "").lower() in ("1", "true", "yes"):
        return True
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return True
    home = Path.home() / ".kaggle"
    if any((home / name).is_file() and (home / name).read_text().strip() for name in ("access_token", "access_token.txt")):
        return True
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    folders = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else [home, xdg]
    return any((folder / "kaggle.json").is_file() for folder in folders)


def require_kaggle_credentials() -> None:
    if not kaggle_credentials_present():
        raise SolverError(f"no Kaggle credentials: {KAGGLE_TOKEN_HOWTO}")


def kaggle_auth_failure(command: str, output: str) -> SolverError | None:
    """The CLI's refusal of the credentials it found (an expired or revoked token, a wrong key) as one line; None otherwise."""
    lines = [line.strip() for line in output.splitlines() if any(marker in line for marker in KAGGLE_AUTH_FAILURES)]
    if not lines:
        return None
    return SolverError(f"{command}: the kaggle CLI did not accept the Kaggle credentials ({lines[0][:200]}); {KAGGLE_TOKEN_HOWTO}")


def kaggle_submit(comp: Competition, path: Path, message: str) -> str:
    """Submit with the kaggle CLI; a clear message when the CLI, the credentials or the competition's slug is missing."""
    if not comp.cfg.kaggle_slug:
        raise SolverError(
            f"kaggle_slug is not set in {comp.folder / 'competition.yaml'}: add the competition's Kaggle name, e.g. kaggle_slug: digit-recognizer"
        )
    exe = shutil.which("kaggle")
    if exe is None:
        raise SolverError("the kaggle CLI is not installed: pip install kaggle (the submission file is written and recorded; submit it by hand)")
    require_kaggle_credentials()
    command = [exe, "competitions", "submit", "-c", comp.cfg.kaggle_slug, "-f", str(path), "-m", message]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise SolverError("kaggle competitions submit did not answer within 10 minutes; check the network and submit again") from None
    if result.returncode != 0:
        auth = kaggle_auth_failure(f"kaggle competitions submit -c {comp.cfg.kaggle_slug}", result.stdout + result.stderr)
        raise auth or SolverError(f"kaggle competitions submit failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return result.stdout.strip()
