"""Adapt a source to the test distribution as <comp>/adapt/<name>.yaml declares -> a new source.

Prior shift (EM estimate of the test's class priors, or given priors), last-layer tuning on frozen embeddings
(pseudo-labels or a labelled subset), or per-label multilabel thresholds fitted on OOF. Writes runs/<comp>/<name>/ and
a leaderboard row; submit it with `make submit SOURCE=<name>`.

python -m solver adapt --comp digits --name adapt001
"""

from solver.adapt.stage import adapt_stage
from solver.base.cli import run_declared_stage


def main(argv: list[str] | None = None) -> None:
    run_declared_stage(__doc__, "adapt", "adapt", adapt_stage, argv)
