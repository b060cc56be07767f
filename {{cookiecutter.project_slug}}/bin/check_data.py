#!/usr/bin/env python
"""Check a competition's files in data/<comp>/ against <comp>/competition.yaml and report every problem at once:
missing files and columns, duplicate or empty ids, labels absent from the class list, test ids that differ from
the sample submission's, missing images and images that do not decode. Exit status 2 when there is any.

python bin/check_data.py --comp protein_atlas [--no-decode]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.competition.check_data import check_data  # noqa: E402
from solver.competition.contract import CONFIG_NAME, Competition  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__, exp=False)
    parser.add_argument("--no-decode", action="store_true", help="only check that the images exist (faster on large data sets)")
    args = parser.parse_args()
    comp = Competition.load(args.root, args.comp)
    report = check_data(comp, decode=not args.no_decode)
    report.raise_problems(comp)
    print(f"{comp.data_dir} matches {comp.folder / CONFIG_NAME}: " + "; ".join(report.summary))


if __name__ == "__main__":
    run_cli(main)
