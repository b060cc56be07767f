"""Write the first competition's folder, remove what was not chosen, then print the next steps. No network."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

INCLUDE_DEMO = "{{ cookiecutter.include_demo }}" == "yes"
COMPETITION = "{{ cookiecutter.competition_slug }}"
TASK = "{{ cookiecutter.competition_task }}"

DEMO_FILES = ["digits", "solver/commands/demo.py", "tests/e2e/test_demo.py", "benchmarks/recipe_vs_plain.py"]


def remove(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_first_competition() -> None:
    """The repo's own `make competition` writes it: one source for the per-competition files, no second copy to drift.

    `python -m solver new-competition` needs only the standard library, so cookiecutter's Python runs it from the
    generated repository's root (the current folder here)."""
    command = [sys.executable, "-m", "solver", "new-competition", "--name", COMPETITION, "--task", TASK, "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if result.returncode != 0:
        print(result.stderr.strip() or result.stdout.strip(), file=sys.stderr)
        sys.exit(1)


def remove_demo_files() -> None:
    remove(DEMO_FILES)
    benchmarks = Path("benchmarks")
    if benchmarks.is_dir() and not any(benchmarks.iterdir()):
        benchmarks.rmdir()


if __name__ == "__main__":
    write_first_competition()
    if not INCLUDE_DEMO:
        remove_demo_files()
    project = Path.cwd().name
    steps = [
        f"cd {project}",
        "make install                 # .venv with torch, timm, albumentations, lightgbm, nmslib",
    ]
    if INCLUDE_DEMO:
        steps.append("make demo                    # the digits demo end to end on the CPU, about 3 minutes")
    steps += [
        f"# complete {COMPETITION}/competition.yaml: kaggle_slug, columns, image pattern, metric, submission format",
        f"make download COMP={COMPETITION}     # the Kaggle files into data/{COMPETITION}/ (or put them there by hand)",
        f"make check-data COMP={COMPETITION}   # every problem of the files against the contract, at once",
        f"make train COMP={COMPETITION} EXP=exp001",
        f"make submit COMP={COMPETITION} EXP=exp001",
        "git init && git add -A && git commit -m 'New competition repo'   # runs record the git SHA",
    ]
    print(f"\nCreated {project}. Next steps:\n  " + "\n  ".join(steps))
