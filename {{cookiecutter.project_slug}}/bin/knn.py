#!/usr/bin/env python
"""Fold-safe kNN features from an experiment's embeddings (nmslib HNSW or exact search), written to
runs/<comp>/<exp>/knn/: features for stacking, and a source (the neighbours' label distribution) with a
leaderboard row. The knn.* keys of the experiment set k, the space, the HNSW parameters and the features.

python bin/knn.py --comp digits --exp exp001_resnet10t [--name RUN] [knn.k=20 ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402
from solver.level2.knn_stage import knn_stage  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__, overrides=True)
    parser.add_argument("--name", help="the run folder under runs/<comp>/ (default: the experiment's name)")
    args = parser.parse_args()
    knn_stage(args.root, args.comp, args.exp, args.overrides, run_name=args.name)


if __name__ == "__main__":
    run_cli(main)
