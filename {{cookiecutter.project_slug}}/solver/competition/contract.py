"""A competition: its contract (competition.yaml), its Kaggle files, and its labels.

Reading a file checks it against the contract and says exactly what is wrong: the file, the column
(listing the columns found), the row, the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from solver.base.custom import custom_file
from solver.base.errors import SolverError, did_you_mean
from solver.competition.metrics import Metric, get_metric
from solver.config.competition import CompetitionConfig, load_competition_config

CONFIG_NAME = "competition.yaml"


def list_competitions(root: Path) -> list[str]:
    return sorted(p.parent.name for p in Path(root).glob(f"*/{CONFIG_NAME}"))


def read_csv(path: Path, what: str, hint: str = "") -> pd.DataFrame:
    if not path.is_file():
        raise SolverError(f"{what} not found: {path}" + (f"; {hint}" if hint else ""))
    try:
        # Ids and labels stay text: '007' must not become 7, and labels are compared as text everywhere.
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SolverError(f"{path}: cannot be read as CSV: {err}") from None


def require_columns(df: pd.DataFrame, columns: list[str], path: Path, key: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SolverError(
            f"{path}: column(s) {', '.join(repr(c) for c in missing)} not found (declared as '{key}' in {CONFIG_NAME}); "
            f"columns found: {', '.join(map(repr, df.columns))}"
        )


def _sort_labels(labels) -> list[str]:
    labels = sorted(set(labels))
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)  # 2 before 10
    return labels


@dataclass
class Competition:
    cfg: CompetitionConfig
    folder: Path  # <root>/<name>: the contract, configs/, custom code
    root: Path
    _train: pd.DataFrame | None = field(default=None, repr=False)

    @classmethod
    def load(cls, root: Path, name: str) -> Competition:
        root = Path(root)
        folder = root / name
        path = folder / CONFIG_NAME
        if not path.is_file():
            found = list_competitions(root)
            raise SolverError(f"competition '{name}': {path} not found; competitions here: {', '.join(found) or 'none'}")
        cfg = load_competition_config(path)
        if cfg.name != name:
            raise SolverError(f"{path}: name is '{cfg.name}' but the folder is '{name}'; make them equal")
        for key, spec in (("metric", cfg.metric), ("submission.function", cfg.submission.function)):
            if spec and ".py" in spec:  # custom code (solver.competition.metrics tells a metric's name from a file the same way)
                custom_file(spec, folder, key)
        return cls(cfg=cfg, folder=folder, root=root)

    # --- paths -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def data_dir(self) -> Path:
        return self.root / (self.cfg.data_dir or f"data/{self.name}")

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs" / self.name

    @property
    def folds_path(self) -> Path:
        return self.runs_dir / "folds.csv"

    def experiment_path(self, exp: str) -> Path:
        path = self.folder / "configs" / f"{exp}.yaml"
        if not path.is_file():
            found = sorted(p.stem for p in (self.folder / "configs").glob("*.yaml"))
            raise SolverError(f"experiment '{exp}': {path} not found; experiments of {self.name}: {', '.join(found) or 'none'}")
        return path

    @property
    def multi_file_images(self) -> bool:
        """True when each sample is several grayscale files, one per channel (competition.yaml image_channels)."""
        return self.cfg.image_channels is not None

    def image_files(self, split: str, sample_id: str) -> list[Path]:
        """The file(s) of one sample: [the image], or one grayscale file per channel in channel order."""
        folder = self.data_dir / (self.cfg.train_images if split == "train" else self.cfg.test_images)
        patterns = self.cfg.image_channels if self.multi_file_images else [self.cfg.image_pattern]
        return [folder / pattern.format(id=sample_id) for pattern in patterns]

    def image_path(self, split: str, sample_id: str) -> Path:
        """The one image file of a sample (the first channel's file for a multi-file competition)."""
        return self.image_files(split, sample_id)[0]

    # --- tables ------------------------------------------------------------------------------------------
    def _read_table(self, file_name: str, key: str, what: str) -> tuple[pd.DataFrame, Path]:
        path = self.data_dir / file_name
        hint = f"put the competition's files in {self.data_dir} (or set data_dir / {key} in {self.folder / CONFIG_NAME})"
        df = read_csv(path, what, hint)
        require_columns(df, [self.cfg.id_column], path, "id_column")
        dupes = df[self.cfg.id_column][df[self.cfg.id_column].duplicated()]
        if len(dupes):
            raise SolverError(f"{path}: id column '{self.cfg.id_column}' has duplicates, e.g. {dupes.iloc[0]!r} ({len(dupes)} in all)")
        return df, path

    def read_train(self) -> pd.DataFrame:
        if self._train is None:
            df, path = self._read_table(self.cfg.train_csv, "train_csv", "train file")
            target_cols = self.target_columns
            require_columns(df, target_cols, path, "target")
            if self.cfg.group_column:
                require_columns(df, [self.cfg.group_column], path, "group_column")
            for col in target_cols:
                empty = df.index[df[col].isna()]
                if len(empty) and not (self.cfg.task == "multilabel" and len(target_cols) == 1):
                    raise SolverError(f"{path}: column '{col}' is empty in row {empty[0] + 2} (line of the file; {len(empty)} rows in all)")
            self._train = df
        return self._train

    def read_test(self) -> pd.DataFrame:
        return self._read_table(self.cfg.test_csv, "test_csv", "test file")[0]

    def read_sample_submission(self) -> pd.DataFrame:
        return self._read_table(self.cfg.sample_submission, "sample_submission", "sample submission")[0]

    # --- labels ------------------------------------------------------------------------------------------
    @property
    def target_columns(self) -> list[str]:
        return list(self.cfg.target) if isinstance(self.cfg.target, list) else [self.cfg.target]

    @property
    def binary_columns(self) -> bool:
        return isinstance(self.cfg.target, list)

    def _label_lists(self, df: pd.DataFrame) -> list[list[str]]:
        col = self.cfg.target
        if self.cfg.task == "multiclass":
            return [[v] for v in df[col]]
        return [str(v).split() if isinstance(v, str) else [] for v in df[col]]

    @cached_property
    def classes(self) -> list[str]:
        """Class names in model-output order (text)."""
        if self.binary_columns:
            return self.target_columns
        if self.cfg.classes is not None:
            return list(self.cfg.classes)
        seen = [label for labels in self._label_lists(self.read_train()) for label in labels]
        return _sort_labels(seen)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def encode_targets(self, df: pd.DataFrame, path: Path | None = None) -> np.ndarray:
        """multiclass: (N,) int64 class indices; multilabel: (N, C) float32 0/1."""
        path = path or self.data_dir / self.cfg.train_csv
        if self.binary_columns:
            values = df[self.target_columns].apply(pd.to_numeric, errors="coerce")  # 1, 1.0 and "1" alike
            bad = ~values.isin([0, 1]).to_numpy()
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise SolverError(
                    f"{path}: column '{self.target_columns[col]}' row {row + 2} is {df[self.target_columns].iat[row, col]!r}; 0/1 columns hold 0 or 1"
                )
            return values.to_numpy().astype(np.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        lists = self._label_lists(df)
        for row, labels in enumerate(lists):
            for label in labels:
                if label not in index:
                    raise SolverError(
                        f"{path}: row {row + 2} has label {label!r}, which is not in the class list "
                        f"({did_you_mean(label, self.classes)}); fix the row or the 'classes' key in {self.folder / CONFIG_NAME}"
                    )
        if self.cfg.task == "multiclass":
            return np.array([index[labels[0]] for labels in lists], dtype=np.int64)
        y = np.zeros((len(lists), self.num_classes), dtype=np.float32)
        for row, labels in enumerate(lists):
            y[row, [index[label] for label in labels]] = 1
        return y

    @cached_property
    def metric(self) -> Metric:
        # CV cuts multilabel probabilities where `make submit` does, so the leaderboard scores the submitted decisions.
        return get_metric(self.cfg.metric, self.cfg.task, self.folder, self.cfg.greater_is_better, self.cfg.submission.threshold)

    def read_holdout(self, test_df: pd.DataFrame) -> np.ndarray | None:
        """Held-out test labels in test.csv order (demo only), or None when the competition has none."""
        if not self.cfg.holdout_answers:
            return None
        path = self.data_dir / self.cfg.holdout_answers
        answers = read_csv(path, "held-out answers")
        require_columns(answers, [self.cfg.id_column, *self.target_columns], path, "target")
        answers = answers.set_index(self.cfg.id_column).reindex(test_df[self.cfg.id_column]).reset_index()
        return self.encode_targets(answers, path)
