"""The house shows the pipeline: solver/'s folders import only from the folders before them in the data flow."""

import ast

import pytest

from tests.conftest import REPO

# The order solver/__init__.py documents; a folder may import from itself and from the folders before it.
ORDER = ["base", "config", "competition", "runs", "nn", "train", "predict", "level2", "adapt", "submit", "commands"]
SOLVER = REPO / "solver"


def solver_imports(path):
    """(line, imported solver module) for every import of the solver in a file, at any depth (lazy imports too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "solver":
            names = [node.module] if node.module != "solver" else [f"solver.{alias.name}" for alias in node.names]
            yield from ((node.lineno, name) for name in names)
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "solver")


def test_every_solver_module_lives_in_a_stage_folder():
    loose = sorted(p.name for p in SOLVER.glob("*.py") if p.name not in {"__init__.py", "__main__.py"})
    assert loose == [], f"modules outside the stage folders: {loose}"
    assert sorted(p.name for p in SOLVER.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(ORDER)


@pytest.mark.parametrize("folder", ORDER)
def test_a_folder_imports_only_from_the_folders_before_it(folder):
    allowed = set(ORDER[: ORDER.index(folder) + 1])
    backwards = []
    for path in sorted((SOLVER / folder).rglob("*.py")):
        for line, module in solver_imports(path):
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else None
            if target == "__main__" or (target in ORDER and target not in allowed):
                backwards.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert backwards == [], "imports that run back up the pipeline:\n" + "\n".join(backwards)


def test_the_check_sees_a_backward_import(tmp_path):
    """The check above can fail: an import of a later folder is found, lazy ones inside a function included."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from solver.train.run import train_experiment\n")
    assert list(solver_imports(module)) == [(2, "solver.train.run")]


# The verbs that only read a contract and files: they start in under a second because nothing here imports torch,
# sklearn or matplotlib at module level (measured: `solver submit` took 5.5 s to import before, 0.7 s now).
LIGHT_VERBS = ["submit", "leaderboard", "check_data", "new_competition", "download", "folds"]
HEAVY = ("torch", "sklearn", "matplotlib", "timm", "lightgbm", "albumentations")


def test_the_light_verbs_import_no_heavy_library():
    import subprocess
    import sys

    check = f"import sys\nfor verb in {LIGHT_VERBS!r}: __import__('solver.commands.' + verb)\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"a light verb imports {result.stdout.strip()} at start-up; import it where it is used"
