"""Template updates reach an existing repo: bake with cruft, change the template, `make update-template`.

The template is a scratch git copy of this one (cruft clones templates with git; a local path needs no network).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import BIN, TEMPLATE

GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
CACHES = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache"}
TEMPLATE_PROJECT = "{{cookiecutter.project_slug}}"


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)


def commit_all(folder: Path, message: str) -> None:
    for args in (["add", "-A"], ["commit", "-q", "-m", message]):
        result = run([*GIT, *args], folder)
        assert result.returncode == 0, result.stdout + result.stderr


def scratch_template(dest: Path) -> Path:
    """This template as its own git repository, without venvs, build output, caches or a demo's data/runs."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = CACHES | {n for n in names if n.endswith(".egg-info")}
        if Path(folder).name == TEMPLATE_PROJECT:
            skip |= {"data", "runs"}
        return skip & set(names)

    shutil.copytree(TEMPLATE, dest, ignore=ignore)
    assert run([*GIT, "init", "-q"], dest).returncode == 0
    commit_all(dest, "template v1")
    return dest


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def update_template(repo: Path) -> subprocess.CompletedProcess:
    # VENV: the test environment, whose bin/ has cruft (a baked repo's .venv would, after make install).
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return run(["make", "update-template", "YES=1", f"VENV={Path(sys.prefix)}"], repo, env=env)


def test_update_template_brings_a_solver_change_and_keeps_the_users_competitions(tmp_path):
    template = scratch_template(tmp_path / "template")
    out = tmp_path / "out"
    created = run([str(BIN / "cruft"), "create", "--no-input", str(template), "--output-dir", str(out)], tmp_path)
    assert created.returncode == 0, created.stdout + created.stderr
    repo = out / "kaggle_solutions"
    state = json.loads((repo / ".cruft.json").read_text())
    v1 = run(["git", "rev-parse", "HEAD"], template).stdout.strip()
    assert state["template"] == str(template) and state["commit"] == v1
    assert state["context"]["cookiecutter"]["competition_slug"] == "my_competition"
    assert run([*GIT, "init", "-q"], repo).returncode == 0
    commit_all(repo, "new competition repo")

    # The user's own work: the first competition completed, an experiment added, a second competition.
    contract = repo / "my_competition/competition.yaml"
    contract.write_text(contract.read_text().replace("n_folds: 5", "n_folds: 4").replace("train_csv: train.csv", "train_csv: labels.csv"))
    (repo / "my_competition/configs/exp002.yaml").write_text("model:\n  name: resnet34\n")
    added = run(["make", "competition", "COMP=protein", "TASK=multilabel", f"VENV={Path(sys.prefix)}"], repo)
    assert added.returncode == 0, added.stderr
    assert "task: multilabel\n" in (repo / "protein/competition.yaml").read_text()
    commit_all(repo, "my competitions")
    mine = {name: snapshot(repo / name) for name in ("my_competition", "protein")}

    # Guard rails first: a dirty tree is refused by cruft, a repo without .cruft.json gets the `cruft link` hint.
    (repo / "scratch.txt").write_text("work in progress\n")
    dirty = update_template(repo)
    assert dirty.returncode != 0 and "clean" in dirty.stdout + dirty.stderr
    (repo / "scratch.txt").unlink()
    (repo / ".cruft.json").rename(tmp_path / "cruft.json")
    unlinked = update_template(repo)
    assert unlinked.returncode != 0 and "error: .cruft.json not found" in unlinked.stderr and "cruft link" in unlinked.stderr
    (tmp_path / "cruft.json").rename(repo / ".cruft.json")

    # The template moves on: a solver change, and a change to what a new competition's contract looks like.
    errors = template / TEMPLATE_PROJECT / "solver/base/errors.py"
    errors.write_text(errors.read_text() + '\n\nTEMPLATE_CHANGE = "v2"  # arrives with make update-template\n')
    scaffold = template / TEMPLATE_PROJECT / "solver/competition/scaffold.py"
    scaffold.write_text(scaffold.read_text().replace("n_folds: 5\n", "n_folds: 10\n"))
    commit_all(template, "template v2")
    v2 = run(["git", "rev-parse", "HEAD"], template).stdout.strip()

    updated = update_template(repo)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert 'TEMPLATE_CHANGE = "v2"' in (repo / "solver/base/errors.py").read_text()
    assert "n_folds: 10\n" in (repo / "solver/competition/scaffold.py").read_text()
    assert json.loads((repo / ".cruft.json").read_text())["commit"] == v2
    assert {name: snapshot(repo / name) for name in mine} == mine  # byte for byte, no .rej or .orig files
    changed = run(["git", "status", "--porcelain"], repo).stdout.split("\n")
    assert sorted(line[3:] for line in changed if line) == [".cruft.json", "solver/base/errors.py", "solver/competition/scaffold.py"]
