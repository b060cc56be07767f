"""Check a competition's Kaggle files against its contract (competition.yaml) and report every problem at once.

Training stops at the first bad file, column or image it meets; this check goes through everything first and
lists each problem with its file and line, so one run tells the whole story: missing files and columns,
duplicate or empty ids, labels outside the declared class list, test ids that differ from the sample
submission's, missing images and images that do not decode.

Training runs the same checks before its first epoch (check_before_training), reading each image's header
instead of decoding its pixels: seconds for tens of thousands of images.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from solver.base.atomic import check_writable
from solver.base.errors import SolverError
from solver.competition.contract import CONFIG_NAME, Competition, read_csv
from solver.competition.images import read_sample, read_sample_header
from solver.competition.submission_format import prediction_column

SHOWN = 10  # rows listed per kind of problem; the rest are counted


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # what was checked and found fine

    def raise_problems(self, comp: Competition) -> None:
        """Every problem in one SolverError (each numbered, with its file and lines), or nothing when there is none."""
        if self.problems:
            listed = "\n".join(f"  {k}. {problem}" for k, problem in enumerate(self.problems, 1))
            raise SolverError(f"{len(self.problems)} problem(s) in {comp.data_dir} checked against {comp.folder / CONFIG_NAME}:\n{listed}")

    def add(self, path: Path, message: str, rows: list[tuple[int, str]] | None = None) -> None:
        """One problem; with rows, `message` is followed by 'line N: detail' for the first SHOWN rows and a count."""
        if not rows:
            self.problems.append(f"{path}: {message}")
            return
        lines = [f"{path} line {line}: {detail}" for line, detail in rows[:SHOWN]]
        more = f"\n    ... and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
        self.problems.append(f"{message} ({len(rows)} row(s)):\n    " + "\n    ".join(lines) + more)


def line_of(index: int) -> int:
    return index + 2  # the header is line 1 of the file


def _read(comp: Competition, report: Report, file_name: str, what: str, columns: dict[str, list[str]]) -> pd.DataFrame | None:
    """The table, or None when it cannot be read; every declared column that is missing is reported."""
    path = comp.data_dir / file_name
    try:
        df = read_csv(path, what)
    except SolverError as err:
        report.problems.append(str(err))
        return None
    for key, cols in columns.items():
        missing = [c for c in cols if c not in df.columns]
        if missing:
            report.add(
                path,
                f"column(s) {', '.join(map(repr, missing))} not found (declared as '{key}' in {comp.folder / CONFIG_NAME}); "
                f"columns found: {', '.join(map(repr, df.columns))}",
            )
    _check_ids(comp, report, df, path)
    return df


def _check_ids(comp: Competition, report: Report, df: pd.DataFrame, path: Path) -> None:
    id_col = comp.cfg.id_column
    if id_col not in df.columns:
        return
    empty = df.index[df[id_col].isna()]
    if len(empty):
        report.add(path, f"empty id in column '{id_col}'", [(line_of(i), "no id") for i in empty])
    ids = df[id_col].dropna()
    repeated = ids[ids.duplicated(keep=False)]
    if len(repeated):
        first = {}
        for i, value in repeated.items():
            first.setdefault(value, []).append(line_of(i))
        rows = [(lines[0], f"id {value!r} also on line(s) {', '.join(map(str, lines[1:]))}") for value, lines in first.items()]
        report.add(path, f"duplicate ids in column '{id_col}'", rows)


def _check_labels(comp: Competition, report: Report, train: pd.DataFrame) -> list[str] | None:
    """Problems of the target column(s); returns the class list (declared, or seen in train.csv) when there is one."""
    path = comp.data_dir / comp.cfg.train_csv
    cols = [c for c in comp.target_columns if c in train.columns]
    if train.empty:
        report.add(path, "no rows (only a header): nothing to train on; is it the competition's train.csv?")
        return comp.cfg.classes
    if comp.binary_columns:
        for col in cols:
            values = pd.to_numeric(train[col], errors="coerce")  # 1, 1.0 and "1" alike
            bad = train.index[~values.isin([0, 1])]
            if len(bad):
                report.add(path, f"0/1 label column '{col}' holds other values", [(line_of(i), repr(train.at[i, col])) for i in bad])
        if cols and not train[cols].apply(pd.to_numeric, errors="coerce").eq(1).any(axis=None):
            report.add(path, f"no row has any label: every 0/1 column ({', '.join(map(repr, cols))}) is 0; nothing to learn")
        return comp.target_columns
    if not cols:
        return comp.cfg.classes
    col = cols[0]
    multiclass = comp.cfg.task == "multiclass"
    if not multiclass and train[col].isna().all():
        report.add(path, f"every row's '{col}' is empty: no label to learn (an empty cell means a sample without labels)")
    if multiclass:
        empty = train.index[train[col].isna()]
        if len(empty):
            report.add(path, f"empty label in column '{col}'", [(line_of(i), "no label") for i in empty])
    declared = comp.cfg.classes
    if declared is None:
        labels = sorted({label for value in train[col].dropna() for label in ([value] if multiclass else value.split())})
        report.summary.append(f"{len(labels)} classes seen in {comp.cfg.train_csv} (no 'classes' list declared)")
        return labels
    known = set(declared)
    rows = []
    for i, value in train[col].dropna().items():
        unknown = [label for label in ([value] if multiclass else value.split()) if label not in known]
        if unknown:
            rows.append((line_of(i), f"label(s) {', '.join(map(repr, unknown))}"))
    if rows:
        report.add(path, f"labels absent from the class list declared in {comp.folder / CONFIG_NAME} ('classes')", rows)
    return declared


def _check_sample(comp: Competition, report: Report, sample: pd.DataFrame, test: pd.DataFrame | None, classes: list[str] | None) -> None:
    path = comp.data_dir / comp.cfg.sample_submission
    id_col = comp.cfg.id_column
    fmt = comp.cfg.submission_format
    if not comp.cfg.submission.function:
        if fmt in ("label", "labels") and prediction_column(comp, sample) not in sample.columns:
            others = [c for c in sample.columns if c != id_col]
            report.add(path, f"no column for the '{fmt}' submission format; set submission.column in {comp.folder / CONFIG_NAME} to one of {others}")
        if fmt in ("probabilities", "binary_columns") and classes:
            missing = [c for c in classes if c not in sample.columns]
            if missing:
                report.add(path, f"no column for label(s) {missing[:SHOWN]} of the '{fmt}' submission format")
    if test is None or id_col not in sample.columns or id_col not in test.columns:
        return
    test_ids, sample_ids = set(test[id_col].dropna()), set(sample[id_col].dropna())
    test_path = comp.data_dir / comp.cfg.test_csv
    only_test = [(line_of(i), repr(v)) for i, v in test[id_col].dropna().items() if v not in sample_ids]
    only_sample = [(line_of(i), repr(v)) for i, v in sample[id_col].dropna().items() if v not in test_ids]
    if only_test:
        report.add(test_path, f"test ids absent from {path.name}", only_test)
    if only_sample:
        report.add(path, f"sample submission ids absent from {test_path.name}", only_sample)


def _decoder(decode: bool | str) -> Callable[[list[Path]], tuple[int | None, str | None]]:
    """files -> (channels, None) or (None, why they cannot be read): "header" reads headers, True decodes pixels."""
    read = read_sample_header if decode == "header" else lambda files: read_sample(files).shape

    def channels(files: list[Path]) -> tuple[int | None, str | None]:
        try:
            return read(files)[2], None
        except SolverError as err:
            return None, str(err)

    return channels


def _check_images(comp: Competition, report: Report, split: str, df: pd.DataFrame, decode: bool | str) -> dict[int, list[Path]]:
    """Every listed sample's file(s) exist and, with decode, are readable images; returns {channels: [first file of each sample]}.

    decode: True decodes every image, "header" reads what the headers say (channels, bit depth, truncation), False neither.
    """
    csv_path = comp.data_dir / (comp.cfg.train_csv if split == "train" else comp.cfg.test_csv)
    id_col = comp.cfg.id_column
    if id_col not in df.columns:
        return {}
    samples = [(i, comp.image_files(split, v)) for i, v in df[id_col].dropna().items()]
    found = [[p.is_file() for p in files] for _, files in samples]
    missing = [(i, p) for (i, files), there in zip(samples, found) for p, ok in zip(files, there) if not ok]
    if missing:
        # the first one named as training names it (check_images_exist), then every row
        i, first = missing[0]
        message = f"{split} images missing: {csv_path}: {len(missing)} listed image(s) not found, e.g. {first} (id {df.at[i, id_col]!r})"
        report.add(csv_path, message, [(line_of(i), f"{p} not found") for i, p in missing])
    present = [sample for sample, there in zip(samples, found) if all(there)]
    channels: dict[int, list[Path]] = {}
    if not decode or not present:
        return channels
    # Decoding is I/O and C code that releases the GIL: a few threads go several times faster than one.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        desc = f"{'check' if decode == 'header' else 'decode'} {split} images"
        results = list(tqdm(pool.map(_decoder(decode), [files for _, files in present]), total=len(present), desc=desc, mininterval=1, leave=False))
    unreadable = []
    for (i, files), (count, why) in zip(present, results):
        if why:
            unreadable.append((line_of(i), why))
        else:
            channels.setdefault(count, []).append(files[0])
    if unreadable:
        report.add(csv_path, f"{split} images that do not decode", unreadable)
    return channels


def check_data(comp: Competition, decode: bool | str = True) -> Report:
    """Every problem of the competition's files against its contract, in one report (decode: see _check_images)."""
    report = Report()
    cfg = comp.cfg
    train_columns = {"id_column": [cfg.id_column], "target": comp.target_columns}
    if cfg.group_column:
        train_columns["group_column"] = [cfg.group_column]
    train = _read(comp, report, cfg.train_csv, "train file", train_columns)
    test = _read(comp, report, cfg.test_csv, "test file", {"id_column": [cfg.id_column]})
    sample = _read(comp, report, cfg.sample_submission, "sample submission", {"id_column": [cfg.id_column]})
    classes = _check_labels(comp, report, train) if train is not None else comp.cfg.classes
    if sample is not None:
        _check_sample(comp, report, sample, test, classes)
    channels: dict[int, list[Path]] = {}
    for split, df in (("train", train), ("test", test)):
        if df is not None:
            for count, files in _check_images(comp, report, split, df, decode).items():
                channels.setdefault(count, []).extend(files)
    if len(channels) > 1:
        counts = ", ".join(f"{len(files)} with {c} channel(s), e.g. {files[0]}" for c, files in sorted(channels.items()))
        report.problems.append(f"images of {comp.name} have different channel counts: {counts}; convert them to one (a model takes one)")
    for name, df in (("train", train), ("test", test), ("sample submission", sample)):
        if df is not None:
            report.summary.append(f"{name}: {len(df)} rows")
    if channels:
        report.summary.append(f"{sum(map(len, channels.values()))} samples decoded, {'/'.join(map(str, sorted(channels)))} channel(s)")
    return report


def check_before_training(comp: Competition) -> None:
    """Before the first epoch: everything `make check-data` checks (images by their headers) and that runs/ can be
    written, so a bad file stops the run at once with every problem listed instead of after a fold has trained."""
    check_data(comp, decode="header").raise_problems(comp)
    check_writable(comp.runs_dir)
