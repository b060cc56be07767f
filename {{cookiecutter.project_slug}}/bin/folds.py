#!/usr/bin/env python
"""Make the competition's folds file (runs/<comp>/folds.csv) once; every later stage reads it.

python bin/folds.py --comp digits
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

import numpy as np  # noqa: E402

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.competition.contract import Competition  # noqa: E402
from solver.competition.folds import load_folds  # noqa: E402


def main() -> None:
    args = make_parser(__doc__, exp=False).parse_args()
    comp = Competition.load(args.root, args.comp)
    folds = load_folds(comp)
    counts = ", ".join(f"fold {k}: {n}" for k, n in enumerate(np.bincount(folds)))
    print(f"{comp.folds_path}: {counts}")


if __name__ == "__main__":
    run_cli(main)
