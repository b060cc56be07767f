#!/usr/bin/env python
"""The embedded demo, end to end on the CPU: prepare the digits competition, make folds, train every fold,
predict, write and validate the submission, print the leaderboard with the CV and held-out scores.

  python bin/demo.py [--exp exp001_resnet10t] [key=value ...]
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.cli import make_parser  # noqa: E402
from solver.competition import Competition  # noqa: E402
from solver.custom import load_module  # noqa: E402
from solver.errors import SolverError, run_cli  # noqa: E402
from solver.experiment import train_experiment  # noqa: E402
from solver.leaderboard import write_leaderboard  # noqa: E402
from solver.submission import make_submission  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__, exp=False, overrides=True)
    parser.set_defaults(comp="digits")
    parser.add_argument("--exp", default="exp001_resnet10t")
    for action in parser._actions:
        if action.dest == "comp":
            action.required = False
    args = parser.parse_args()
    start = time.perf_counter()
    comp = Competition.load(args.root, args.comp)
    load_module(comp.folder / "prepare.py").prepare(comp.data_dir)
    score = train_experiment(args.root, args.comp, args.exp, overrides=args.overrides)
    if score is None:
        raise SolverError("the demo trains every fold; drop train.folds from the overrides")
    path = make_submission(comp, comp.runs_dir / args.exp)
    print(f"submission validated against {comp.cfg.sample_submission} and written to {path}")
    print(write_leaderboard(comp)[1])
    minutes = (time.perf_counter() - start) / 60
    print(f"demo: CV {score['metric']} {score['cv']:.4f}, held-out {score['metric']} {score['holdout']:.4f}, {minutes:.1f} minutes")


if __name__ == "__main__":
    run_cli(main)
