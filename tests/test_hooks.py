"""pre_gen rejects bad answers with one line and leaves nothing behind; post_gen prints the next steps."""

import subprocess
import sys

import pytest

from tests.conftest import bake


@pytest.mark.parametrize(
    "answers, value, rule",
    [
        ({"competition_slug": "my-comp"}, "my-comp", "Python identifier"),
        ({"competition_slug": "1st"}, "1st", "Python identifier"),
        ({"competition_slug": "class"}, "class", "Python identifier"),
        ({"competition_slug": "Protein"}, "Protein", "lowercase"),
        ({"competition_slug": "bin"}, "bin", "clashes"),
        ({"competition_slug": "solver"}, "solver", "clashes"),
        ({"competition_slug": "tests"}, "tests", "clashes"),
        ({"competition_slug": "data"}, "data", "clashes"),
        ({"competition_slug": "runs"}, "runs", "clashes"),
        ({"competition_slug": "digits"}, "digits", "reserved for the demo"),
        ({"competition_slug": "digits", "include_demo": "no"}, "digits", "reserved for the demo"),
        ({"project_slug": "My Repo!"}, "My Repo!", "lowercase letters"),
        ({"python_version": "2.7"}, "2.7", "3.10 or newer"),
    ],
)
def test_invalid_answer_is_one_line_and_leaves_no_folder(tmp_path, answers, value, rule):
    result = bake(tmp_path, **answers)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1, result.stderr
    assert f"'{value}'" in ours[0] and rule in ours[0]
    assert list(tmp_path.iterdir()) == []


def test_a_choice_outside_its_list_is_refused_by_cookiecutter(tmp_path):
    result = bake(tmp_path, competition_task="regression")
    assert result.returncode != 0 and "choices are ['multiclass', 'multilabel']" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_post_gen_prints_next_steps(tmp_path):
    result = bake(tmp_path, competition_slug="protein")
    assert result.returncode == 0, result.stderr
    assert "Next steps" in result.stdout and "make install" in result.stdout and "make train COMP=protein" in result.stdout


def test_the_hooks_command_needs_only_the_standard_library(tmp_path):
    """The post-gen hook runs `python -m solver new-competition` with cookiecutter's Python, which may have nothing but
    the standard library: with site-packages switched off (-S), the command still writes a competition."""
    result = bake(tmp_path)
    assert result.returncode == 0, result.stderr
    repo = tmp_path / "kaggle_solutions"
    command = [sys.executable, "-S", "-m", "solver", "new-competition", "--name", "protein", "--task", "multilabel", "--quiet"]
    made = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "task: multilabel" in (repo / "protein/competition.yaml").read_text()
    # The check can fail: a module that needs a third-party package does not import under -S.
    assert subprocess.run([sys.executable, "-S", "-c", "import yaml"], capture_output=True).returncode != 0
