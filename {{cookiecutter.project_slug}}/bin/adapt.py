#!/usr/bin/env python
"""Adapt a source's predictions to the test distribution as declared in <comp>/adapt/<name>.yaml: prior shift (EM
estimate of the test's class priors, or given priors), last-layer tuning on frozen embeddings (pseudo-labels or a
labelled subset), or per-label multilabel thresholds fitted on OOF. Writes runs/<comp>/<name>/ and a leaderboard row;
submit it with `make submit SOURCE=<name>`.

python bin/adapt.py --comp digits --name adapt001
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

from solver.adapt.stage import adapt_stage  # noqa: E402
from solver.base.cli import make_parser  # noqa: E402
from solver.base.errors import run_cli  # noqa: E402


def main() -> None:
    parser = make_parser(__doc__, exp=False)
    parser.add_argument("--name", required=True, help="<comp>/adapt/<name>.yaml")
    args = parser.parse_args()
    adapt_stage(args.root, args.comp, args.name)


if __name__ == "__main__":
    run_cli(main)
