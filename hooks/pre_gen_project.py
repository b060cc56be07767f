"""Validate the answers before anything is generated: one line naming the value and the rule.

Cookiecutter removes the half-made project folder when this hook exits non-zero. Choice variables
(competition_task, include_demo) are checked by cookiecutter itself.
"""

import keyword
import re
import sys

RESERVED = {"bin", "solver", "tests", "data", "runs", "build", "benchmarks"}

project_slug = "{{ cookiecutter.project_slug }}"
competition_slug = "{{ cookiecutter.competition_slug }}"
python_version = "{{ cookiecutter.python_version }}"


def problems() -> list[str]:
    found = []
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", project_slug):
        found.append(f"project_slug '{project_slug}' is invalid: use lowercase letters, digits, '_' or '-', starting with a letter")
    if not competition_slug.isidentifier() or keyword.iskeyword(competition_slug) or competition_slug != competition_slug.lower():
        rule = "it must be a lowercase Python identifier (letters, digits, '_'), e.g. protein_atlas"
        found.append(f"competition_slug '{competition_slug}' is invalid: {rule}")
    elif competition_slug in RESERVED:
        taken = ", ".join(sorted(RESERVED))
        found.append(
            f"competition_slug '{competition_slug}' is invalid: it clashes with the repository's own folder of that name ({taken} are taken)"
        )
    elif competition_slug == "digits":
        found.append("competition_slug 'digits' is invalid: the name is reserved for the demo competition; choose another name")
    match = re.fullmatch(r"3\.(\d+)", python_version)
    if not match or int(match.group(1)) < 10:
        found.append(f"python_version '{python_version}' is invalid: give 3.10 or newer as major.minor, e.g. 3.11")
    return found


if __name__ == "__main__":
    for problem in problems():
        print(f"error: {problem}", file=sys.stderr)
    if problems():
        sys.exit(1)
