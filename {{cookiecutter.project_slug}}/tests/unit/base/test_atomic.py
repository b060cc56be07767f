import pandas as pd
import pytest

from solver.base.atomic import atomic_write, promote_dir, write_csv


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_csv(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")

    def crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert path.read_text() == "a\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]  # no temporary file left


def test_promote_dir_replaces_a_finished_folder(tmp_path):
    (tmp_path / "fold0").mkdir()
    (tmp_path / "fold0" / "old").write_text("old")
    (tmp_path / "fold0.partial").mkdir()
    (tmp_path / "fold0.partial" / "new").write_text("new")
    promote_dir(tmp_path / "fold0.partial", tmp_path / "fold0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold0"]
    assert [p.name for p in (tmp_path / "fold0").iterdir()] == ["new"]
