"""Train an experiment on every fold (or --fold k), then write OOF, test predictions and the CV score.

A fold killed before it finished resumes from fold<k>.partial/last.pt when run again; finished folds are kept
(a finished experiment is left as it is). Another config than the finished folds' is refused unless --fresh,
which retrains every requested fold and keeps the experiment's results until the new folds are joined.

python -m solver train --comp digits --exp exp001_resnet10t [--fold 0,1] [train.lr=1e-3 ...]

Several GPUs (DDP, data.batch_size per process; `make train GPUS=N` checks the launch first):
  torchrun --standalone --nproc-per-node=N -m solver train --comp ... --exp ...
A final model on every training row, for the median of the folds' best epochs, once the folds are trained
(runs/<comp>/<exp>/full/: test predictions, no OOF, the experiment's CV as cv_from):
  python -m solver train --comp ... --exp ... --full
Several folds at once, one job each (each takes a lock on its fold; the last one to finish joins the OOF;
--jobs 2: each takes its share of the cores' threads):
  python -m solver train --comp ... --exp ... --fold 0 --jobs 2 &  python -m solver train --comp ... --exp ... --fold 1 --jobs 2
With track.mlflow=true the run is logged to MLflow too (solver/train/tracking.py).
"""

from solver.base.cli import make_parser
from solver.base.errors import SolverError
from solver.base.threads import share_threads
from solver.train.full_fit import full_fit
from solver.train.tracking import train


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "train", folds=True, overrides=True)
    parser.add_argument("--fresh", action="store_true", help="retrain the folds from scratch: finished ones and killed runs (fold<k>.partial) alike")
    parser.add_argument("--name", help="the run folder under runs/<comp>/ (default: the experiment's name), e.g. for a sweep")
    parser.add_argument(
        "--full", action="store_true", help="after the folds: one model on every training row for the epochs they chose -> <exp>/full"
    )
    parser.add_argument("--jobs", type=int, help="training jobs side by side on this machine: this one takes cores // jobs threads")
    args = parser.parse_args(argv)
    if args.jobs:
        share_threads(args.jobs)
    if args.full:
        if args.folds is not None:
            raise SolverError(f"FULL=1 trains on every row, not on folds: drop FOLD={','.join(map(str, args.folds))} (--fold)")
        full_fit(args.root, args.comp, args.exp, args.overrides, fresh=args.fresh, run_name=args.name)
        return
    train(args.root, args.comp, args.exp, args.folds, args.overrides, fresh=args.fresh, run_name=args.name)
