#!/usr/bin/env python
"""Download a competition's files with the kaggle CLI and unzip them into data/<comp>/ (kaggle_slug in
<comp>/competition.yaml names the competition). Files already there are replaced only with --force.

python bin/download.py --comp protein_atlas [--force]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.competition.contract import Competition  # noqa: E402
from solver.competition.kaggle import download  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__, exp=False)
    parser.add_argument("--force", action="store_true", help="replace files already in data/<comp>/")
    args = parser.parse_args()
    comp = Competition.load(args.root, args.comp)
    written = download(comp, force=args.force)
    print(f"{comp.data_dir}: {', '.join(p.name for p in written)}")
    print(f"next: make check-data COMP={comp.name}")


if __name__ == "__main__":
    run_cli(main)
