"""Check data/<comp>/ against <comp>/competition.yaml and report every problem at once.

Missing files and columns, duplicate or empty ids, labels absent from the class list, test ids that differ from the
sample submission's, missing images and images that do not decode. Exit status 2 when there is any.

python -m solver check-data --comp protein_atlas [--no-decode]
"""

from solver.base.cli import make_parser
from solver.competition.check_data import check_data
from solver.competition.contract import CONFIG_NAME, Competition


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "check-data", exp=False)
    parser.add_argument("--no-decode", action="store_true", help="only check that the images exist (faster on large data sets)")
    args = parser.parse_args(argv)
    comp = Competition.load(args.root, args.comp)
    report = check_data(comp, decode=not args.no_decode)
    report.raise_problems(comp)
    print(f"{comp.data_dir} matches {comp.folder / CONFIG_NAME}: " + "; ".join(report.summary))
