#!/usr/bin/env python
"""Combine sources (experiments, TTA, kNN, other ensembles) as declared in <comp>/ensembles/<name>.yaml:
mean, Caruana's greedy forward selection on OOF, or rank averaging. Writes runs/<comp>/<name>/ and a leaderboard row.

python bin/ensemble.py --comp digits --name ens001
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.level2.stages import ensemble_stage  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__, exp=False)
    parser.add_argument("--name", required=True, help="<comp>/ensembles/<name>.yaml")
    args = parser.parse_args()
    ensemble_stage(args.root, args.comp, args.name)


if __name__ == "__main__":
    run_cli(main)
