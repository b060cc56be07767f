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
    help_lines = [line for line in makefile.splitlines() if line.strip().startswith("@echo")]
    for target in make_targets() - {"help"}:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"make {target} has no rule"
        assert any(re.search(rf"\b{re.escape(target)}\b", line) for line in help_lines), f"make {target} is not in `make help`"
        assert re.search(rf"make( [\w-]+ /)* {re.escape(target)}\b|make {re.escape(target)}\b|`{re.escape(target)}`", readme), (
            f"README: no make {target}"
        )
    assert {"lint", "package", "leaderboard", "test-fast"} <= make_targets()


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
