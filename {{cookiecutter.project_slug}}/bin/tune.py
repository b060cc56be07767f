#!/usr/bin/env python
"""Search an experiment's `tune:` block with Optuna; write the best trial as <comp>/configs/<exp>_tuned.yaml.

python bin/tune.py --comp digits --exp exp001 [--trials 20] [--storage postgresql://user:pass@host/db] [key=value ...]

The study is in runs/<comp>/optuna.db (SQLite) unless --storage (or tune.storage) names a database server.
Several workers (processes, machines) on one study at once: start this on each, same study and storage;
--trials is the number of finished trials the study ends with, all workers together.
Several GPUs: torchrun --standalone --nproc-per-node=N bin/tune.py ... (rank 0 samples, every rank trains the trial)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.base.threads import share_threads  # noqa: E402
from solver.train.tune import tune  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__, overrides=True)
    parser.add_argument("--trials", type=int, help="finished trials the study holds at the end (default: tune.trials)")
    parser.add_argument("--storage", help="an Optuna RDB URL shared by the workers (default: tune.storage, else sqlite in runs/<comp>/)")
    parser.add_argument("--study", help="the study's name (default: tune.study, else the experiment's name)")
    parser.add_argument("--jobs", type=int, help="workers side by side on this machine: this one takes cores // jobs threads")
    args = parser.parse_args()
    if args.trials is not None and args.trials < 1:
        parser.error(f"--trials {args.trials}: give at least 1")
    if args.jobs:
        share_threads(args.jobs)
    tune(args.root, args.comp, args.exp, args.trials, args.storage, args.study, args.overrides)


if __name__ == "__main__":
    run_cli(main)
