"""python -m solver <verb> [args]: every stage of the pipeline, one verb each (the Makefile's targets call them).

Installed (pip install -e .), the same is the `solver` command: solver <verb> [args].

Only the chosen verb's module is imported, so `python -m solver --help` is instant; each line of that list is the
first line of the verb's docstring, read without importing it. Standard library only at module level.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

from solver.base.cli import PROG
from solver.base.errors import did_you_mean, run_cli

# The verbs in the order data flows through them, each with its module in solver/commands/.
VERBS = {
    "new-competition": "new_competition",
    "download": "download",
    "check-data": "check_data",
    "experiment": "experiment",
    "baseline": "baseline",
    "folds": "folds",
    "plan": "plan",
    "train": "train",
    "tune": "tune",
    "predict": "predict",
    "pseudo": "pseudo",
    "knn": "knn",
    "ensemble": "ensemble",
    "stack": "stack",
    "adapt": "adapt",
    "submit": "submit",
    "leaderboard": "leaderboard",
    "package": "package",
    "demo": "demo",
}
COMMANDS = Path(__file__).resolve().parent / "commands"


def available() -> dict[str, str]:
    """The verbs whose module this repository has (one generated without the demo has no demo)."""
    return {verb: module for verb, module in VERBS.items() if (COMMANDS / f"{module}.py").is_file()}


def summary(module: str) -> str:
    """The first line of a command's docstring, parsed from its source: nothing is imported."""
    doc = ast.get_docstring(ast.parse((COMMANDS / f"{module}.py").read_text(encoding="utf-8"))) or ""
    return doc.split("\n", 1)[0]


def usage() -> str:
    verbs = available()
    width = max(map(len, verbs))
    lines = [f"  {verb:<{width}}  {summary(module)}" for verb, module in verbs.items()]
    return (
        f"usage: {PROG} <verb> [args]   ({PROG} <verb> --help: its flags)\n\n"
        "The pipeline, one verb per stage, in the order data flows (make help shows them as make targets):\n" + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    verb, rest = argv[0], argv[1:]
    verbs = available()
    if verb not in verbs:
        if verb in VERBS:
            reason = f"'{verb}' is not included in this repository (it was generated without the demo)"
        else:
            reason = f"'{verb}' is not a verb of {PROG} ({did_you_mean(verb, verbs)})"
        print(f"error: {reason}; {PROG} --help lists them", file=sys.stderr)
        sys.exit(2)
    run_cli(lambda: importlib.import_module(f"solver.commands.{verbs[verb]}").main(rest))


if __name__ == "__main__":
    main()
