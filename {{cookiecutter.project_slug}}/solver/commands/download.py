"""Download a competition's files from Kaggle (kaggle CLI) into data/<comp>/.

The files are unzipped into data/<comp>/; kaggle_slug in <comp>/competition.yaml names the competition. Files already
there are replaced only with --force.

python -m solver download --comp protein_atlas [--force]
"""

from solver.base.cli import make_parser
from solver.competition.contract import Competition
from solver.competition.kaggle import download


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "download", exp=False)
    parser.add_argument("--force", action="store_true", help="replace files already in data/<comp>/")
    args = parser.parse_args(argv)
    comp = Competition.load(args.root, args.comp)
    written = download(comp, force=args.force)
    print(f"{comp.data_dir}: {', '.join(p.name for p in written)}")
    print(f"next: make check-data COMP={comp.name}")
