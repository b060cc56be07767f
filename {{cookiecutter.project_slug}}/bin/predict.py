#!/usr/bin/env python
"""Recompute OOF and test predictions from every finished fold's best checkpoint, optionally with TTA-N
(written as a source of its own, <exp>/ttaN, with its leaderboard row). --tta auto: fixed views (identity, the
flips training used, shifts, scales) chosen on OOF fold-safely, written as <exp>/tta_auto only when it beats the plain CV.

python bin/predict.py --comp digits --exp exp001_resnet10t [--tta 8 | --tta auto]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.predict.run import predict_experiment  # noqa: E402


def tta_arg(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is neither a number of views nor auto") from None


def main() -> None:
    parser = make_parser(__doc__, overrides=True)
    parser.add_argument(
        "--tta",
        type=tta_arg,
        help="TTA-N: N views per image (tta.* keys of the experiment set the pipeline and averaging); auto: views chosen on OOF",
    )
    parser.add_argument("--name", help="the run folder under runs/<comp>/ (default: the experiment's name)")
    args = parser.parse_args()
    predict_experiment(args.root, args.comp, args.exp, args.overrides, run_name=args.name, tta=args.tta)


if __name__ == "__main__":
    run_cli(main)
