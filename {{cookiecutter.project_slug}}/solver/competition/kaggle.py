"""Download a competition's files with the kaggle CLI and unzip them into data/<comp>/.

The competition's Kaggle name is `kaggle_slug` in its competition.yaml. The download goes to a temporary folder
inside data/<comp>/ and is unzipped there; its files move into place only when everything was extracted, so a
failed or interrupted download leaves no half-written file next to the good ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from pathlib import Path

from tqdm.auto import tqdm

from solver.base.errors import SolverError
from solver.competition.contract import CONFIG_NAME, Competition
from solver.competition.kaggle_auth import kaggle_auth_failure, require_kaggle_credentials


def kaggle_command(comp: Competition) -> tuple[str, str]:
    """(the kaggle executable, the competition's slug), or a SolverError saying which of the three is missing."""
    slug = comp.cfg.kaggle_slug
    if not slug:
        raise SolverError(
            f"kaggle_slug is not set in {comp.folder / CONFIG_NAME}: add the competition's name from its Kaggle URL, "
            "e.g. kaggle_slug: digit-recognizer for kaggle.com/competitions/digit-recognizer"
        )
    exe = shutil.which("kaggle")
    if exe is None:
        raise SolverError(f"the kaggle CLI is not installed: pip install kaggle (or download the files by hand into {comp.data_dir})")
    require_kaggle_credentials()
    return exe, slug


def _run_showing_output(command: list[str]) -> tuple[int, str]:
    """Run the CLI with its messages passed through to the terminal as they come (its progress bars, on stderr, go
    straight there); the last lines of its messages are kept to recognise an authentication failure."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        tail: deque[str] = deque(maxlen=20)
        for line in process.stdout:
            sys.stdout.write(line)
            tail.append(line)
    return process.returncode, "".join(tail)


def _extract(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        root = into.resolve()
        members = zf.infolist()
        for member in members:
            # A member named ../x or /x would land outside data/<comp>/ ("zip slip").
            if not (root / member.filename).resolve().is_relative_to(root):
                raise SolverError(f"{archive.name}: member {member.filename!r} would be written outside {into}; refusing the archive")
        for member in tqdm(members, desc=f"unzip {archive.name}", mininterval=1, leave=False):
            zf.extract(member, into)


MAX_NESTING = 5  # zips inside zips: more levels than any competition has


def _extract_nested(folder: Path) -> None:
    """Kaggle archives often hold more zips (train.zip, test.zip, train.csv.zip): extract each where it lies, then drop it."""
    for _ in range(MAX_NESTING):
        inner = sorted(p for p in folder.rglob("*.zip") if p.is_file() and zipfile.is_zipfile(p))
        if not inner:
            return
        for archive in inner:
            _extract(archive, _inner_target(archive))
            archive.unlink()
    raise SolverError(f"the download holds zips nested more than {MAX_NESTING} levels deep; unzip them by hand")


def _inner_target(archive: Path) -> Path:
    """Next to the zip when it holds one file (train.csv.zip) or one top folder (train.zip of train/...); else in a
    folder of its name (train.zip of flat images -> train/), so its files do not scatter among the others."""
    with zipfile.ZipFile(archive) as zf:
        files = [name for name in zf.namelist() if not name.endswith("/")]
    if len(files) <= 1 or (all("/" in name for name in files) and len({name.split("/")[0] for name in files}) == 1):
        return archive.parent
    return archive.parent / archive.stem


def _place(entry: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.replace(entry, target)


def download(comp: Competition, force: bool = False) -> list[Path]:
    """Fetch and unzip the competition's files into its data_dir; returns the top-level entries written."""
    exe, slug = kaggle_command(comp)
    data_dir = comp.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".download.", suffix=".partial", dir=data_dir))
    try:
        fetched = partial / "fetched"
        fetched.mkdir()
        command = [exe, "competitions", "download", "-c", slug, "-p", str(fetched)]
        returncode, output = _run_showing_output(command)
        if returncode != 0:
            raise kaggle_auth_failure(f"kaggle competitions download -c {slug}", output) or SolverError(
                f"kaggle competitions download -c {slug} failed (exit status {returncode}, its message is above); "
                f"a 403 means the competition's rules are not accepted yet: https://www.kaggle.com/competitions/{slug}/rules"
            )
        downloaded = sorted(fetched.iterdir())
        if not downloaded:
            raise SolverError(f"kaggle competitions download -c {slug} wrote no file into {fetched}")
        files = partial / "files"
        files.mkdir()
        for path in downloaded:
            if zipfile.is_zipfile(path):
                _extract(path, files)
            else:
                os.replace(path, files / path.name)  # a competition with a single small file is not zipped
        _extract_nested(files)
        entries = sorted(files.iterdir())
        taken = [entry.name for entry in entries if (data_dir / entry.name).exists()]
        if taken and not force:
            raise SolverError(
                f"{data_dir} already has {', '.join(taken[:5])}{' ...' if len(taken) > 5 else ''}: nothing was replaced; "
                "download again with --force (make download FORCE=1) to replace them"
            )
        for entry in entries:
            _place(entry, data_dir / entry.name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return [data_dir / entry.name for entry in entries]
