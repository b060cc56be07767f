#!/usr/bin/env python
"""Recompute OOF and test predictions from every finished fold's best checkpoint.

python bin/predict.py --comp digits --exp exp001_resnet10t
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.cli import make_parser  # noqa: E402
from solver.errors import run_cli  # noqa: E402
from solver.experiment import predict_experiment  # noqa: E402


def main() -> None:
    args = make_parser(__doc__, overrides=True).parse_args()
    predict_experiment(args.root, args.comp, args.exp, args.overrides)


if __name__ == "__main__":
    run_cli(main)
