#!/usr/bin/env python
"""Print every experiment's CV score and write runs/<comp>/leaderboard.csv.

python bin/leaderboard.py --comp digits
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.competition.contract import Competition  # noqa: E402
from solver.runs.leaderboard import write_leaderboard  # noqa: E402


def main() -> None:
    args = make_parser(__doc__, exp=False).parse_args()
    print(write_leaderboard(Competition.load(args.root, args.comp))[1])


if __name__ == "__main__":
    run_cli(main)
