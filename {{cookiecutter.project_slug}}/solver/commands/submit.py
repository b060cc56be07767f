"""Validate a source's submission in the competition's format and record it in the ledger (--kaggle: submit it).

The submission is validated before it is written; the ledger is runs/<comp>/submissions.csv (time, git SHA, source,
CV). A source is an experiment, its TTA (exp/tta8), its kNN (exp/knn), an ensemble or a stack: any folder under
runs/<comp>/ with a test.csv.

python -m solver submit --comp digits --source exp001_resnet10t [--out submission.csv] [--kaggle]
"""

from pathlib import Path

from solver.base.cli import make_parser
from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.submit.submission import kaggle_message, kaggle_submit, make_submission, record_submission


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "submit", exp=False)
    parser.add_argument("--source", "--exp", dest="source", required=True, help="a folder under runs/<comp>/, e.g. exp001 or exp001/tta8")
    parser.add_argument("--out", type=Path, help="where to write it (default: runs/<comp>/<source>/submission.csv)")
    parser.add_argument("--kaggle", action="store_true", help="also submit with the kaggle CLI, the CV score in the message")
    args = parser.parse_args(argv)
    comp = Competition.load(args.root, args.comp)
    source_dir = comp.runs_dir / args.source
    if not source_dir.is_dir():
        found = sorted(str(p.parent.relative_to(comp.runs_dir)) for p in comp.runs_dir.glob("**/test.csv") if "fold" not in p.parent.name)
        raise SolverError(f"source '{args.source}': {source_dir} does not exist; sources with test predictions: {', '.join(found) or 'none'}")
    path = make_submission(comp, source_dir, args.out)
    print(f"submission validated against {comp.cfg.sample_submission} and written to {path}")
    if not args.kaggle:
        record_submission(comp, args.source, path)
    else:
        message = kaggle_message(comp, args.source)
        try:
            print(kaggle_submit(comp, path, message))
        except SolverError:
            record_submission(comp, args.source, path, kaggle=False)  # the file exists and is valid; the upload did not happen
            raise
        record_submission(comp, args.source, path, kaggle=True)
        print(f"submitted to Kaggle with message: {message}")
    print(f"recorded in {comp.runs_dir / 'submissions.csv'}")
