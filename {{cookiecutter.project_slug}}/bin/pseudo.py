#!/usr/bin/env python
"""Fold-safe pseudo-labels: retrain each fold with the test rows its OWN model labelled confidently, then join the
folds into runs/<comp>/<exp>/pseudo/, a source like any other (leaderboard, ensembles, stacks, submit).

Settings: the `pseudo:` section of the experiment (threshold or top_fraction, labels hard|soft, weight, epochs), or
overrides: python bin/pseudo.py --comp digits --exp exp001_resnet10t pseudo.top_fraction=0.5 pseudo.labels=soft
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.level2.pseudo import pseudo_experiment  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__, overrides=True)
    parser.add_argument("--fresh", action="store_true", help="retrain every pseudo-label fold from scratch (other settings than the finished ones)")
    parser.add_argument("--name", help="the experiment's run folder under runs/<comp>/ (default: the experiment's name)")
    args = parser.parse_args()
    pseudo_experiment(args.root, args.comp, args.exp, args.overrides, fresh=args.fresh, run_name=args.name)


if __name__ == "__main__":
    run_cli(main)
