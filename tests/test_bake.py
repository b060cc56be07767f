"""Bake every combination of choices and check the generated repository as a user would get it."""

import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import BIN, TEMPLATE, bake

TEMPLATE_PROJECT = TEMPLATE / "{{cookiecutter.project_slug}}"
DEMO_ONLY = {"digits", "solver/commands/demo.py", "tests/e2e/test_demo.py", "benchmarks/recipe_vs_plain.py"}
IGNORED = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not IGNORED & set(p.relative_to(folder).parts)}


def expected_files(combo: dict) -> set[str]:
    expected = set()
    for name in files_under(TEMPLATE_PROJECT):
        name = name.replace("{{cookiecutter.competition_slug}}", "my_competition")
        if combo["include_demo"] == "no" and any(name == d or name.startswith(d + "/") for d in DEMO_ONLY):
            continue
        expected.add(name)
    # The first competition's folder is written by the post_gen hook (python -m solver new-competition), not copied.
    return expected | {"my_competition/competition.yaml", "my_competition/configs/exp001.yaml"}


def test_exact_file_set(baked):
    repo, combo = baked
    assert files_under(repo) == expected_files(combo)
    must_have = {
        "Makefile",
        "README.md",
        "pyproject.toml",
        ".gitignore",
        "solver/__main__.py",
        "solver/commands/train.py",
        "solver/commands/predict.py",
        "solver/commands/submit.py",
        "solver/commands/leaderboard.py",
        "solver/train/loop.py",
        "my_competition/competition.yaml",
        "my_competition/configs/exp001.yaml",
    }
    assert must_have <= files_under(repo)
    assert ("digits/competition.yaml" in files_under(repo)) == (combo["include_demo"] == "yes")


def test_no_template_syntax_left(baked):
    repo, _ = baked
    for name in files_under(repo):
        text = (repo / name).read_text()
        assert not re.search(r"\{\{|\{%|cookiecutter\.", text), f"template syntax left in {name}"


def test_choices_reach_the_files(baked):
    repo, combo = baked
    contract = (repo / "my_competition/competition.yaml").read_text()
    assert f"task: {combo['competition_task']}" in contract
    makefile = (repo / "Makefile").read_text()
    assert ("\ndemo:" in makefile) == (combo["include_demo"] == "yes")
    assert "COMP ?= my_competition" in makefile
    ignored = (repo / ".gitignore").read_text().split()
    assert "/data/" in ignored and "/runs/" in ignored  # anchored: solver/runs/ is code, runs/ at the root is results


def test_solver_help_lists_the_verbs_of_this_bake(baked):
    """`python -m solver --help` lists the pipeline's verbs; a bake without the demo has no demo verb."""
    repo, combo = baked
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-m", "solver", "--help"], cwd=repo, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    verbs = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert {"new-competition", "check-data", "train", "predict", "stack", "submit"} <= verbs
    assert ("demo" in verbs) == (combo["include_demo"] == "yes")
    if combo["include_demo"] == "no":
        demo = subprocess.run([sys.executable, "-m", "solver", "demo"], cwd=repo, capture_output=True, text=True, timeout=60, env=env)
        assert demo.returncode == 2 and demo.stderr.startswith("error: 'demo' is not included")


def test_ruff_clean(baked):
    repo, _ = baked
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([str(BIN / "ruff"), *args], cwd=repo, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_dependencies_match_the_test_environment(baked):
    repo, _ = baked
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {line.strip() for line in (TEMPLATE / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")}
    assert set(deps) <= pinned
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= set(deps)


def test_generated_tests_pass(generated_suite):
    """The baked repo's whole suite, the digits demo end to end included, runs once: in the default bake, started with
    the session (tests/conftest.py: generated_suite) and waited for here, after the template's other tests.

    The choices change only the file set, the first competition's folder and the demo's files, never the solver or
    its tests, so the other bakes check just those (here): the file set, no template syntax, ruff, the first
    competition's contract, that their suite collects, and `make install` plus a stage (test_make_install_...)."""
    process, log = generated_suite
    try:
        process.wait(timeout=2400)
    finally:
        output = log.read_text(errors="replace")
        print(output[-5000:])
    assert process.returncode == 0, output[-8000:]


# What the baked suite reads: its tests, the code they import and the demo's files. The first competition's folder
# (the one file set the task choice changes) is read by no test; test_first_competition_contract_loads checks it.
SUITE_INPUTS = ("pyproject.toml", "tests", "solver", "benchmarks", "digits")


def suite_fingerprint(repo: Path) -> str:
    """One hash of every file the baked suite can see: two bakes with the same one collect the same tests."""
    digest = hashlib.sha256()
    for name in sorted(files_under(repo)):
        if name.split("/")[0] in SUITE_INPUTS:
            digest.update(name.encode() + b"\0" + (repo / name).read_bytes() + b"\0")
    return digest.hexdigest()


@pytest.fixture(scope="session")
def collected_trees(default_bake) -> set[str]:
    """The suite trees already checked in this session, starting with the default bake's, which
    test_generated_tests_pass runs whole (collecting it first)."""
    return {suite_fingerprint(default_bake)}


def test_generated_suite_collects(baked, collected_trees):
    """Every distinct suite tree imports (a test that needs a removed demo file would fail here, not in a user's repo).

    The task choice changes no file the suite reads, so the four bakes have two trees: with the demo (run whole in
    the default bake) and without it (collected here once). Each collection imports torch and timm: 20 s."""
    repo, combo = baked
    tree = suite_fingerprint(repo)
    if tree in collected_trees:
        pytest.skip("this bake's tests, code and demo files are byte-identical to a bake already collected or run")
    args = [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider"]
    result = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert ("tests/e2e/test_demo.py" in result.stdout) == (combo["include_demo"] == "yes")
    collected_trees.add(tree)


def test_first_competition_contract_loads(baked):
    """The hook's first competition is a valid contract of the chosen task, and its exp001 a valid experiment, as
    the baked solver reads them."""
    repo, combo = baked
    check = (
        "from pathlib import Path\n"
        "from solver.config.competition import load_competition_config\nfrom solver.config.experiment import load_experiment_config\n"
        "comp = load_competition_config(Path('my_competition/competition.yaml'))\n"
        "load_experiment_config(Path('my_competition/configs/exp001.yaml'))\n"
        "print(comp.task, comp.submission_format)\n"
    )
    result = subprocess.run([sys.executable, "-c", check], cwd=repo, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    task, submission_format = result.stdout.split()
    assert task == combo["competition_task"]
    assert submission_format in {"multiclass": {"label", "probabilities"}, "multilabel": {"labels", "binary_columns"}}[task]


def test_make_install_then_stages_from_the_makefile(tmp_path):
    result = bake(tmp_path, competition_task="multilabel", include_demo="no")
    assert result.returncode == 0, result.stderr
    repo = tmp_path / "kaggle_solutions"
    env = {**os.environ, "PIP_NO_INDEX": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    venv = Path(sys.prefix)
    install = subprocess.run(
        ["make", "install", f"VENV={venv}", "PIP_FLAGS=--no-deps"], cwd=repo, capture_output=True, text=True, env=env, timeout=600
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # No data yet: the stage stops with a clear line naming the missing file.
    train = subprocess.run(["make", "train", f"VENV={venv}"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert train.returncode != 0
    assert train.stderr.startswith("error: ") and "train file not found: data/my_competition/train.csv" in train.stderr
    assert "Traceback" not in train.stderr
