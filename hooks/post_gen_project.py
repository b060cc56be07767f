"""Remove what was not chosen, then print the next steps. No network."""

import shutil
from pathlib import Path

INCLUDE_DEMO = "{{ cookiecutter.include_demo }}" == "yes"
COMPETITION = "{{ cookiecutter.competition_slug }}"

DEMO_FILES = ["digits", "bin/demo.py", "tests/test_demo.py", "benchmarks/recipe_vs_plain.py"]


def remove(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def remove_demo_files() -> None:
    remove(DEMO_FILES)
    benchmarks = Path("benchmarks")
    if benchmarks.is_dir() and not any(benchmarks.iterdir()):
        benchmarks.rmdir()


if __name__ == "__main__":
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
        f"# put the Kaggle files in data/{COMPETITION}/ and complete {COMPETITION}/competition.yaml",
        f"make train COMP={COMPETITION} EXP=exp001",
        f"make submit COMP={COMPETITION} EXP=exp001",
        "git init && git add -A && git commit -m 'New competition repo'   # runs record the git SHA",
    ]
    print(f"\nCreated {project}. Next steps:\n  " + "\n  ".join(steps))
