"""Level 2 as <comp>/stacks/<name>.yaml declares: a logistic blend or LightGBM over OOF logits, kNN, metadata.

Over the OOF logits of sources, kNN features and metadata columns, on the competition's folds; per fold, a logistic
blend or LightGBM, whichever an inner CV on the fold's training rows prefers (lgbm.model). Writes runs/<comp>/<name>/
and a leaderboard row.

python -m solver stack --comp digits --name stack001
"""

from solver.base.cli import make_parser
from solver.level2.stages import stack_stage


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "stack", exp=False)
    parser.add_argument("--name", required=True, help="<comp>/stacks/<name>.yaml")
    args = parser.parse_args(argv)
    stack_stage(args.root, args.comp, args.name)
