"""Validate the answers before anything is generated: one line naming the value and the rule.

Cookiecutter removes the half-made project folder when this hook exits non-zero.
"""

import keyword
import re
import sys

RESERVED = {"bin", "solver", "tests", "data", "runs", "build", "benchmarks"}

project_slug = "{{ cookiecutter.project_slug }}"
competition_slug = "{{ cookiecutter.competition_slug }}"
task = "{{ cookiecutter.competition_task }}"
include_demo = "{{ cookiecutter.include_demo }}"
python_version = "{{ cookiecutter.python_version }}"


def problems() -> list[str]:
    found = []
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", project_slug):
        found.append(f"project_slug '{project_slug}' is invalid: use lowercase letters, digits, '_' or '-', starting with a letter")
    if not competition_slug.isidentifier() or keyword.iskeyword(competition_slug) or competition_slug != competition_slug.lower():
        found.append(f"competition_slug '{competition_slug}' is invalid: it must be a lowercase Python identifier (letters, digits, '_'), e.g. protein_atlas")
    elif competition_slug in RESERVED:
        found.append(f"competition_slug '{competition_slug}' is invalid: it clashes with the repository's own folder '{competition_slug}/' ({', '.join(sorted(RESERVED))} are taken)")
    elif competition_slug == "digits" and include_demo == "yes":
        found.append("competition_slug 'digits' is invalid: it clashes with the demo competition; choose another name or include_demo=no")
    if task not in ("multiclass", "multilabel"):
        found.append(f"competition_task '{task}' is invalid: choose multiclass or multilabel")
    if include_demo not in ("yes", "no"):
        found.append(f"include_demo '{include_demo}' is invalid: answer yes or no")
    match = re.fullmatch(r"3\.(\d+)", python_version)
    if not match or int(match.group(1)) < 10:
        found.append(f"python_version '{python_version}' is invalid: give 3.10 or newer as major.minor, e.g. 3.11")
    return found


if __name__ == "__main__":
    for problem in problems():
        print(f"error: {problem}", file=sys.stderr)
    if problems():
        sys.exit(1)
