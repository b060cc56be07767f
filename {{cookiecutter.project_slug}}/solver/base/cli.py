"""Argument parsing shared by the commands in solver/commands/ (`python -m solver <verb>`). Standard library only."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

# torch re-raises an exception of a DataLoader worker in the main process as the same type, its message replaced by
# "Caught SolverError in DataLoader worker process 0.\nOriginal Traceback (most recent call last): ..."
_WORKER_PREFIX = "Caught SolverError in DataLoader worker process"
_ORIGINAL = "solver.base.errors.SolverError: "


def error_message(err: Exception) -> str:
    """The message for the user's `error:` line: a worker's SolverError loses the worker's traceback torch put in front."""
    message = str(err)
    if message.startswith(_WORKER_PREFIX) and _ORIGINAL in message:
        return message[message.rindex(_ORIGINAL) + len(_ORIGINAL) :].rstrip("\n")
    return message


def fold_list(text: str) -> list[int]:
    try:
        return [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a fold number or a comma-separated list of them, e.g. 0,2") from None


PROG = "python -m solver"


def make_parser(doc: str, verb: str, exp: bool = True, folds: bool = False, overrides: bool = False) -> argparse.ArgumentParser:
    """The parser of `python -m solver <verb>`: --root and --comp, and --exp, --fold, key=value overrides where asked."""
    parser = argparse.ArgumentParser(prog=f"{PROG} {verb}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: current folder)")
    parser.add_argument("--comp", required=True, help="competition folder, e.g. digits")
    if exp:
        parser.add_argument("--exp", required=True, help="experiment: <comp>/configs/<exp>.yaml")
    if folds:
        parser.add_argument("--fold", dest="folds", type=fold_list, help="train only these folds, e.g. 0 or 0,2 (default: all)")
    if overrides:
        parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-3 model.name=resnet34")
    return parser


def run_declared_stage(doc: str, verb: str, folder: str, stage: Callable[[Path, str, str], object], argv: list[str] | None) -> None:
    """The command of a level-2 stage that a YAML file declares (ensemble, stack, adapt): --comp and --name, where the
    name is <comp>/<folder>/<name>.yaml; the stage reads the file and writes runs/<comp>/<name>/."""
    parser = make_parser(doc, verb, exp=False)
    parser.add_argument("--name", required=True, help=f"<comp>/{folder}/<name>.yaml")
    args = parser.parse_args(argv)
    stage(args.root, args.comp, args.name)
