"""Level 2 as <comp>/stacks/<name>.yaml declares: a logistic blend or LightGBM over OOF logits, kNN, metadata.

Over the OOF logits of sources, kNN features and metadata columns, on the competition's folds; per fold, a logistic
blend or LightGBM, whichever an inner CV on the fold's training rows prefers (lgbm.model). Writes runs/<comp>/<name>/
and a leaderboard row.

python -m solver stack --comp digits --name stack001
"""

from solver.base.cli import run_declared_stage
from solver.level2.stages import stack_stage


def main(argv: list[str] | None = None) -> None:
    run_declared_stage(__doc__, "stack", "stacks", stack_stage, argv)
