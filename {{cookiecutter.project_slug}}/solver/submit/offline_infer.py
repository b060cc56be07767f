"""Offline inference of a package made by `make package`: writes a validated submission from this folder alone.

python infer.py --data /kaggle/input/<competition> --out submission.csv [--device cpu|cuda|auto] [--probs test_probs.csv] [--verbose]

--data holds the competition's test.csv, test images and sample_submission.csv as competition.yaml names them.
Nothing is downloaded: the models are built without pretrained weights and the packaged checkpoints loaded.
(This file is a template: `make package` copies it into the package as infer.py.)
"""

import argparse
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# The packaged solver, never an installed one; `python -I` does not put the script's folder on sys.path itself.
sys.path.insert(0, str(PACKAGE))

import solver  # noqa: E402
from solver.base.errors import SolverError, run_cli  # noqa: E402
from solver.submit.package import predict_package  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with test.csv, the test images and sample_submission.csv")
    parser.add_argument("--out", type=Path, default=Path("submission.csv"), help="where to write the submission (default: submission.csv)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when visible), cpu or cuda")
    parser.add_argument("--probs", type=Path, help="also write the test probabilities averaged over the folds to this CSV")
    parser.add_argument("--verbose", action="store_true", help="print where the solver was imported from, the device and the progress")
    args = parser.parse_args()
    if PACKAGE not in Path(solver.__file__).resolve().parents:
        raise SolverError(f"imported the solver from {solver.__file__}, not from the package {PACKAGE}; run infer.py from its package folder")
    predict_package(PACKAGE, args.data, args.out, args.device, args.probs, args.verbose)


if __name__ == "__main__":
    run_cli(main)
