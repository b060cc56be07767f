#!/usr/bin/env python
"""Write an experiment's submission in the competition's format, after validating it.

python bin/submit.py --comp digits --exp exp001_resnet10t [--out submission.csv]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.cli import make_parser  # noqa: E402
from solver.competition import Competition  # noqa: E402
from solver.errors import run_cli  # noqa: E402
from solver.submission import make_submission  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--out", type=Path, help="where to write it (default: runs/<comp>/<exp>/submission.csv)")
    args = parser.parse_args()
    comp = Competition.load(args.root, args.comp)
    path = make_submission(comp, comp.runs_dir / args.exp, args.out)
    print(f"submission validated against {comp.cfg.sample_submission} and written to {path}")


if __name__ == "__main__":
    run_cli(main)
