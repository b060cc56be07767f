"""Fold-safe kNN features and a kNN source from an experiment's embeddings -> <exp>/knn.

nmslib HNSW or exact search, written to runs/<comp>/<exp>/knn/: features for stacking, and a source (the neighbours'
label distribution) with a leaderboard row. The knn.* keys of the experiment set k, the space, the HNSW parameters and
the features.

python -m solver knn --comp digits --exp exp001_resnet10t [--name RUN] [knn.k=20 ...]
"""

from solver.base.cli import make_parser
from solver.level2.knn_stage import knn_stage


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "knn", overrides=True)
    parser.add_argument("--name", help="the run folder under runs/<comp>/ (default: the experiment's name)")
    args = parser.parse_args(argv)
    knn_stage(args.root, args.comp, args.exp, args.overrides, run_name=args.name)
