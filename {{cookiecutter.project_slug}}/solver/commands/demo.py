"""The embedded digits demo, end to end on the CPU (about 5 minutes on 2 cores; --full: every stage, about 8).

make demo       prepare the digits competition, make folds, train exp001 on every fold, predict, write and
                validate the submission, print the leaderboard with the CV and held-out scores (about 5 minutes)
make demo-full  the same, then a second, different model (exp002), TTA-8, kNN features, a Caruana ensemble,
                a LightGBM stack and a prior-shift adaptation (adapt001), each a leaderboard row with its held-out
                score; submits the best CV row. On 2 cores or more, exp002 trains beside exp001 in a process of its
                own, each with its share of the cores (its log: runs/digits/exp002_regnetx.log)

python -m solver demo [--full] [key=value ...]   (overrides apply to exp001)
"""

import subprocess
import sys
import time
from pathlib import Path

from solver.adapt.stage import adapt_stage
from solver.base.cli import make_parser
from solver.base.custom import load_module
from solver.base.errors import SolverError
from solver.base.threads import available_cores, share_threads
from solver.competition.contract import Competition
from solver.competition.folds import load_folds
from solver.level2.knn_stage import knn_stage
from solver.level2.stages import ensemble_stage, stack_stage
from solver.predict.run import predict_experiment
from solver.runs.leaderboard import write_leaderboard
from solver.submit.submission import make_submission, record_submission
from solver.train.run import train_experiment

FIRST, SECOND = "exp001_resnet10t", "exp002_regnetx"


def start_beside(root: Path, comp: Competition) -> tuple[subprocess.Popen, Path]:
    """exp002 in a process of its own while this one trains exp001, each with its share of the cores (solver/base/
    threads.py, as `make train JOBS=2`): the small models of the demo use one core each better than two cores one
    after the other, and the test suite's demo, one thread on a CI worker, ends sooner. Its output goes to a log."""
    log = comp.runs_dir / f"{SECOND}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "solver", "train", "--root", str(root), "--comp", comp.name, "--exp", SECOND, "--jobs", "2"]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    print(f"{comp.name}/{SECOND} trains beside {FIRST} in a process of its own; its log: {log}")
    share_threads(2)
    return process, log


def wait_beside(process: subprocess.Popen, log: Path) -> None:
    """Wait for exp002's process and print its summary line, or stop with its log's last lines when it failed."""
    code = process.wait()
    lines = [line for line in log.read_text(errors="replace").replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    if code != 0:
        tail = "\n".join(lines[-5:])
        raise SolverError(f"{SECOND}, trained beside {FIRST}, stopped with exit status {code}; the end of {log}:\n{tail}")
    print(next((line for line in reversed(lines) if f"/{SECOND}: CV" in line), f"{SECOND}: trained (log: {log})"))


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
    load_folds(comp)  # written once, before a second process could race to write it
    second = start_beside(args.root, comp) if args.full and available_cores() >= 2 else None
    try:
        if train_experiment(args.root, args.comp, FIRST, overrides=args.overrides) is None:
            raise SolverError("the demo trains every fold; drop train.folds from the overrides")
    except BaseException:
        if second is not None:
            second[0].terminate()  # its finished folds stay; an interrupted one resumes next time
        raise
    if args.full:
        if second is None:
            train_experiment(args.root, args.comp, SECOND)
        else:
            wait_beside(*second)
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
