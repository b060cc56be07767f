"""Make the competition's folds file (runs/<comp>/folds.csv) once; every later stage reads it.

python -m solver folds --comp digits
"""

import numpy as np

from solver.base.cli import make_parser
from solver.competition.contract import Competition
from solver.competition.folds import load_folds


def main(argv: list[str] | None = None) -> None:
    args = make_parser(__doc__, "folds", exp=False).parse_args(argv)
    comp = Competition.load(args.root, args.comp)
    folds = load_folds(comp)
    counts = ", ".join(f"fold {k}: {n}" for k, n in enumerate(np.bincount(folds)))
    print(f"{comp.folds_path}: {counts}")
