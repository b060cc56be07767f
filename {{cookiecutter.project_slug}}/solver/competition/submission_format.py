"""What the competition accepts as a submission: its format, checked against sample_submission.csv before training and after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from solver.base.custom import load_function
from solver.base.errors import SolverError
from solver.competition.contract import Competition

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


def numeric_probabilities(probs: pd.DataFrame, classes: list[str], path: Path) -> pd.DataFrame:
    """The class columns of a predictions file as floats; text that is not a number is refused, named."""
    values = probs[classes].apply(pd.to_numeric, errors="coerce")
    text = (values.isna() & probs[classes].notna() & ~probs[classes].isin(["nan", "NaN", "-nan"])).to_numpy()
    if text.any():
        row, col = np.argwhere(text)[0]
        raise SolverError(
            f"{path}: column '{classes[col]}' line {row + 2} is {probs[classes].iat[row, col]!r}, not a number; rerun the stage that wrote it"
        )
    return values


def note_rows_without_labels(comp: Competition, sub: pd.DataFrame, threshold: float | None) -> None:
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
