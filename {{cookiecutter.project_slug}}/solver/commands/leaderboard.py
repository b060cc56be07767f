"""Print every experiment's CV score and write runs/<comp>/leaderboard.csv.

python -m solver leaderboard --comp digits
"""

from solver.base.cli import make_parser
from solver.competition.contract import Competition
from solver.runs.leaderboard import write_leaderboard


def main(argv: list[str] | None = None) -> None:
    args = make_parser(__doc__, "leaderboard", exp=False).parse_args(argv)
    print(write_leaderboard(Competition.load(args.root, args.comp))[1])
