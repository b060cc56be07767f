#!/usr/bin/env python
"""Level 2 as declared in <comp>/stacks/<name>.yaml: over the OOF logits of sources, kNN features and metadata
columns, on the competition's folds; per fold, a logistic blend or LightGBM, whichever an inner CV on the fold's
training rows prefers (lgbm.model). Writes runs/<comp>/<name>/ and a leaderboard row.

python bin/lgbm.py --comp digits --name stack001
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.level2.stages import stack_stage  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__, exp=False)
    parser.add_argument("--name", required=True, help="<comp>/stacks/<name>.yaml")
    args = parser.parse_args()
    stack_stage(args.root, args.comp, args.name)


if __name__ == "__main__":
    run_cli(main)
