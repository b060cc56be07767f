"""Fold-safe pseudo-labels: retrain each fold with the test rows its own model labelled -> <exp>/pseudo.

Each fold retrains with the test rows its OWN model labelled confidently; the folds are joined into
runs/<comp>/<exp>/pseudo/, a source like any other (leaderboard, ensembles, stacks, submit).

Settings: the `pseudo:` section of the experiment (threshold or top_fraction, labels hard|soft, weight, epochs), or
overrides: python -m solver pseudo --comp digits --exp exp001_resnet10t pseudo.top_fraction=0.5 pseudo.labels=soft
"""

from solver.base.cli import make_parser
from solver.level2.pseudo import pseudo_experiment


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "pseudo", overrides=True)
    parser.add_argument("--fresh", action="store_true", help="retrain every pseudo-label fold from scratch (other settings than the finished ones)")
    parser.add_argument("--name", help="the experiment's run folder under runs/<comp>/ (default: the experiment's name)")
    args = parser.parse_args(argv)
    pseudo_experiment(args.root, args.comp, args.exp, args.overrides, fresh=args.fresh, run_name=args.name)
