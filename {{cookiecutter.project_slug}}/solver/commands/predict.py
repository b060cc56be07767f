"""Predict OOF and test again from the folds' best checkpoints, optionally with TTA (a source of its own).

TTA-N is written as a source of its own, <exp>/ttaN, with its leaderboard row. --tta auto: fixed views (identity, the
flips training used, shifts, scales) chosen on OOF fold-safely, written as <exp>/tta_auto only when it beats the plain
CV.

python -m solver predict --comp digits --exp exp001_resnet10t [--tta 8 | --tta auto]
"""

import argparse

from solver.base.cli import make_parser
from solver.predict.run import predict_experiment


def tta_arg(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is neither a number of views nor auto") from None


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "predict", overrides=True)
    parser.add_argument(
        "--tta",
        type=tta_arg,
        help="TTA-N: N views per image (tta.* keys of the experiment set the pipeline and averaging); auto: views chosen on OOF",
    )
    parser.add_argument("--name", help="the run folder under runs/<comp>/ (default: the experiment's name)")
    args = parser.parse_args(argv)
    predict_experiment(args.root, args.comp, args.exp, args.overrides, run_name=args.name, tta=args.tta)
