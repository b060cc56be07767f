#!/usr/bin/env python
"""Write an experiment's per-step training plan (lr, image size, augmentation probability, MixUp) as CSV and PNG,
without training: runs/<comp>/<exp>/plan.csv and plan.png.

  python bin/plan.py --comp digits --exp exp001_resnet10t [key=value ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.train.plan import write_plan  # noqa: E402


def main() -> None:
    args = make_parser(__doc__, overrides=True).parse_args()
    csv_path, png_path, plan = write_plan(args.root, args.comp, args.exp, args.overrides)
    print(f"{len(plan)} optimizer steps over {plan['epoch'].max()} epochs, lr {plan['lr'].min():.2e}..{plan['lr'].max():.2e}")
    print(f"plan written to {csv_path} and {png_path}")


if __name__ == "__main__":
    run_cli(main)
