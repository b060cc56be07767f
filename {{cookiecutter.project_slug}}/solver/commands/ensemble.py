"""Combine sources as <comp>/ensembles/<name>.yaml declares: mean, Caruana selection or rank average.

Sources: experiments, TTA, kNN, other ensembles. Caruana: greedy forward selection on OOF. Writes runs/<comp>/<name>/
and a leaderboard row.

python -m solver ensemble --comp digits --name ens001
"""

from solver.base.cli import run_declared_stage
from solver.level2.stages import ensemble_stage


def main(argv: list[str] | None = None) -> None:
    run_declared_stage(__doc__, "ensemble", "ensembles", ensemble_stage, argv)
