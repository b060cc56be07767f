"""Combine sources as <comp>/ensembles/<name>.yaml declares: mean, Caruana selection or rank average.

Sources: experiments, TTA, kNN, other ensembles. Caruana: greedy forward selection on OOF. Writes runs/<comp>/<name>/
and a leaderboard row.

python -m solver ensemble --comp digits --name ens001
"""

from solver.base.cli import make_parser
from solver.level2.stages import ensemble_stage


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "ensemble", exp=False)
    parser.add_argument("--name", required=True, help="<comp>/ensembles/<name>.yaml")
    args = parser.parse_args(argv)
    ensemble_stage(args.root, args.comp, args.name)
