"""Search an experiment's `tune:` block with Optuna; write the best trial as <comp>/configs/<exp>_tuned.yaml.

python -m solver tune --comp digits --exp exp001 [--trials 20] [--storage postgresql://user:pass@host/db] [key=value ...]

The study is in runs/<comp>/optuna.db (SQLite) unless --storage (or tune.storage) names a database server.
Several workers (processes, machines) on one study at once: start this on each, same study and storage;
--trials is the number of finished trials the study ends with, all workers together.
Several GPUs: torchrun --standalone --nproc-per-node=N -m solver tune ... (rank 0 samples, every rank trains the trial)
"""

from solver.base.cli import make_parser
from solver.base.threads import share_threads
from solver.train.tune import tune


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "tune", overrides=True)
    parser.add_argument("--trials", type=int, help="finished trials the study holds at the end (default: tune.trials)")
    parser.add_argument("--storage", help="an Optuna RDB URL shared by the workers (default: tune.storage, else sqlite in runs/<comp>/)")
    parser.add_argument("--study", help="the study's name (default: tune.study, else the experiment's name)")
    parser.add_argument("--jobs", type=int, help="workers side by side on this machine: this one takes cores // jobs threads")
    args = parser.parse_args(argv)
    if args.trials is not None and args.trials < 1:
        parser.error(f"--trials {args.trials}: give at least 1")
    if args.jobs:
        share_threads(args.jobs)
    tune(args.root, args.comp, args.exp, args.trials, args.storage, args.study, args.overrides)
