"""The repository's tooling: every make target documented, CI and pre-commit run what `make lint` and `make test-fast` run."""

import re

import yaml

from tests.conftest import REPO


def make_targets() -> set[str]:
    phony = next(line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith(".PHONY:"))
    tag = re.escape("{" + "%") + ".*?" + re.escape("%" + "}")  # template tags, in the template itself (split: no tag in this file)
    return set(re.sub(tag, " ", phony).split()[1:])


def test_every_make_target_is_in_the_help_and_the_readme():
    makefile, readme = (REPO / "Makefile").read_text(), (REPO / "README.md").read_text()
    help_lines = [line for line in makefile.splitlines() if re.match(r"[a-z][a-z-]*:.*## ", line)]  # make help prints them
    for target in make_targets() - {"help"}:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"make {target} has no rule"
        assert any(re.search(rf"\b{re.escape(target)}\b", line) for line in help_lines), f"make {target} is not in `make help`"
        assert re.search(rf"make( [\w-]+ /)* {re.escape(target)}\b|make {re.escape(target)}\b|`{re.escape(target)}`", readme), (
            f"README: no make {target}"
        )
    assert {"lint", "package", "leaderboard", "test-fast"} <= make_targets()


def test_every_make_variable_is_documented_where_it_is_defined():
    """Each variable has a comment on the line above its definition (`## ` ones are what make help prints)."""
    lines = (REPO / "Makefile").read_text().splitlines()
    defined = [(i, line.split()[0]) for i, line in enumerate(lines) if re.match(r"[A-Z][A-Z_]* *(\?|:)?= ?", line)]
    assert len(defined) > 30
    for i, name in defined:
        assert lines[i - 1].startswith("#"), f"Makefile: {name} has no comment above its definition"
    documented = {line.split()[1].split("=")[0] for line in lines if line.startswith("## ")}
    assert {"COMP", "EXP", "RUN", "ENSEMBLE", "STACK", "ADAPT", "GPUS"} <= documented and "NAME" not in documented


def test_ci_installs_lints_and_runs_the_fast_tests_on_the_cpu():
    text = (REPO / ".github/workflows/tests.yml").read_text()
    assert "$" + "{" + "{" not in text  # no GitHub expressions: the workflow reads the same in the template and the repo
    workflow = yaml.safe_load(text)
    assert {"push", "pull_request"} <= set(workflow[True])  # YAML 1.1 reads the key `on` as True
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs[0].startswith("make install") and "download.pytorch.org/whl/cpu" in runs[0]
    assert runs[1:] == ["make lint", "make test-fast"]
    uses = [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]
    assert uses == ["actions/checkout", "actions/setup-python"]


def test_pre_commit_runs_ruff_and_refuses_large_files():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert hooks["ruff-check"]["args"] == ["--fix"] and "ruff-format" in hooks
    assert "check-added-large-files" in hooks
    assert all(re.fullmatch(r"v\d+\.\d+\.\d+", repo["rev"]) for repo in config["repos"])  # pinned versions
