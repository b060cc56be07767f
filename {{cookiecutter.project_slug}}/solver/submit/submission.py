"""Test probabilities -> the competition's submission format, validated against sample_submission.csv.

A submission is written only after it passes every check; otherwise nothing is written and the error
lists what is wrong.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd

from solver.base.atomic import write_csv
from solver.base.errors import SolverError
from solver.base.provenance import git_sha
from solver.competition.contract import Competition, read_csv
from solver.competition.kaggle_auth import kaggle_auth_failure, require_kaggle_credentials
from solver.competition.submission_format import build_submission, note_rows_without_labels, numeric_probabilities, validate_submission
from solver.runs.source import TEST_FILE, read_config, read_score, stale_inputs


def make_submission(comp: Competition, source_dir: Path, out_path: Path | None = None) -> Path:
    """Read <source_dir>/test.csv, build and validate the submission, write it atomically."""
    stale = stale_inputs(source_dir)
    if stale:
        raise SolverError(f"{source_dir.name} is stale: {stale}; run its stage again (make ensemble / make stack) before submitting it")
    test_path = source_dir / TEST_FILE
    if not test_path.is_file():
        raise SolverError(f"{test_path} not found: no test predictions for {source_dir.name}; train all folds (or `make predict`) first")
    test_probs = read_csv(test_path, "test predictions")
    missing = [c for c in comp.classes if c not in test_probs.columns]
    if missing:
        raise SolverError(f"{test_path}: no column for class(es) {missing[:5]}; it was made with another class list")
    test_probs[comp.classes] = numeric_probabilities(test_probs, comp.classes, test_path)
    sample = comp.read_sample_submission()
    config = read_config(source_dir)
    sub = build_submission(comp, test_probs, sample, config.get("decision_threshold"), source=str(test_path))
    validate_submission(sub, sample, comp)
    note_rows_without_labels(comp, sub, config.get("decision_threshold"))
    out_path = out_path or source_dir / "submission.csv"
    write_csv(sub, out_path)
    return out_path


LEDGER_COLUMNS = ["time", "git_sha", "source", "kind", "metric", "cv", "holdout", "file", "sha256", "kaggle"]


def record_submission(comp: Competition, source: str, path: Path, kaggle: bool = False) -> Path:
    """Append a row to runs/<comp>/submissions.csv: what was submitted, from which source, with which CV."""
    score = read_score(comp.runs_dir / source) or {}
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


def kaggle_message(comp: Competition, source: str) -> str:
    """'exp001/tta8 CV accuracy 0.99370': the leaderboard later shows what each submission was."""
    score = read_score(comp.runs_dir / source) or {}
    return f"{source} CV {score['metric']} {score['cv']:.5f}" if score.get("cv") is not None else source


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
