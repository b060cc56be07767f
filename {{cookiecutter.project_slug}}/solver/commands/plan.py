"""Write an experiment's per-step plan (lr, image size, augmentation, MixUp) as CSV and PNG, without training.

Written to runs/<comp>/<exp>/plan.csv and plan.png.

  python -m solver plan --comp digits --exp exp001_resnet10t [key=value ...]
"""

from solver.base.cli import make_parser
from solver.train.plan import write_plan


def main(argv: list[str] | None = None) -> None:
    args = make_parser(__doc__, "plan", overrides=True).parse_args(argv)
    csv_path, png_path, plan = write_plan(args.root, args.comp, args.exp, args.overrides)
    print(f"{len(plan)} optimizer steps over {plan['epoch'].max()} epochs, lr {plan['lr'].min():.2e}..{plan['lr'].max():.2e}")
    print(f"plan written to {csv_path} and {png_path}")
