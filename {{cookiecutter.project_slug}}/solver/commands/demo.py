"""The embedded digits demo, end to end on the CPU (about 5 minutes on 2 cores; --full: every stage, about 10).

make demo       prepare the digits competition, make folds, train exp001 on every fold, predict, write and
                validate the submission, print the leaderboard with the CV and held-out scores (about 5 minutes)
make demo-full  the same, then a second, different model (exp002), TTA-8, kNN features, a Caruana ensemble,
                a LightGBM stack and a prior-shift adaptation (adapt001), each a leaderboard row with its held-out
                score; submits the best CV row

python -m solver demo [--full] [key=value ...]   (overrides apply to exp001)
"""

import time

from solver.adapt.stage import adapt_stage
from solver.base.cli import make_parser
from solver.base.custom import load_module
from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.level2.knn_stage import knn_stage
from solver.level2.stages import ensemble_stage, stack_stage
from solver.predict.run import predict_experiment
from solver.runs.leaderboard import write_leaderboard
from solver.submit.submission import make_submission, record_submission
from solver.train.run import train_experiment

FIRST, SECOND = "exp001_resnet10t", "exp002_regnetx"


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "demo", exp=False, overrides=True)
    parser.set_defaults(comp="digits")
    parser.add_argument("--full", action="store_true", help="two models, TTA, kNN, ensemble, stack and prior-shift adaptation")
    for action in parser._actions:
        if action.dest == "comp":
            action.required = False
    args = parser.parse_args(argv)
    start = time.perf_counter()
    comp = Competition.load(args.root, args.comp)
    load_module(comp.folder / "prepare.py").prepare(comp.data_dir)
    if train_experiment(args.root, args.comp, FIRST, overrides=args.overrides) is None:
        raise SolverError("the demo trains every fold; drop train.folds from the overrides")
    if args.full:
        train_experiment(args.root, args.comp, SECOND)
        predict_experiment(args.root, args.comp, FIRST, overrides=args.overrides, tta=8)
        knn_stage(args.root, args.comp, FIRST, overrides=args.overrides)
        ensemble_stage(args.root, args.comp, "ens001")
        stack_stage(args.root, args.comp, "stack001")
        adapt_stage(args.root, args.comp, "adapt001")  # the test's class priors by EM; digits' test set is balanced
    board, text = write_leaderboard(comp)
    fresh = board[~board["stale"].astype(bool)]
    best = fresh.iloc[0]  # sorted by CV: the source to submit is chosen on CV, never on the held-out answers
    path = make_submission(comp, comp.runs_dir / best["source"])
    record_submission(comp, best["source"], path)
    print(f"submission of {best['source']} (best CV) validated against {comp.cfg.sample_submission} and written to {path}")
    print(text)
    minutes = (time.perf_counter() - start) / 60
    print(
        f"demo: best CV {best['metric']} {best['cv']:.4f} ({best['source']}), held-out {best['metric']} {best['holdout']:.4f}, {minutes:.1f} minutes"
    )
