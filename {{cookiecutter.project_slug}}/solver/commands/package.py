"""Package an experiment for a code competition: a Kaggle dataset folder that predicts offline.

The experiment or its TTA, as a folder to upload as a Kaggle dataset, with the solver code, the fold checkpoints, the
resolved config, infer.py and infer.ipynb that run offline from it alone.

python -m solver package --comp digits --source exp001_resnet10t [--out build/package/x] [--force] [--user kaggle-name]
"""

from pathlib import Path

from solver.base.cli import make_parser
from solver.competition.contract import Competition
from solver.submit.package import USER_PLACEHOLDER, build_package, package_size


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "package", exp=False)
    parser.add_argument("--source", "--exp", dest="source", required=True, help="an experiment, e.g. exp001, or its TTA, e.g. exp001/tta8")
    parser.add_argument("--out", type=Path, help="package folder (default: build/package/<comp>-<source>)")
    parser.add_argument("--force", action="store_true", help="replace an existing package (it stays until the new one is complete)")
    parser.add_argument("--user", help="Kaggle user name for dataset-metadata.json (default: $KAGGLE_USERNAME, else a placeholder)")
    args = parser.parse_args(argv)
    comp = Competition.load(args.root, args.comp)
    out = build_package(comp, args.source, args.out, args.force, args.user)
    print(f"packaged {comp.name}/{args.source} into {out} ({package_size(out) / 1e6:.1f} MB)")
    print(f"  offline check: python {out / 'infer.py'} --data {comp.data_dir} --out /tmp/submission.csv --verbose")
    if USER_PLACEHOLDER in (out / "dataset-metadata.json").read_text():
        print(f"  set your Kaggle user name in {out / 'dataset-metadata.json'} (or rebuild with KAGGLE_USER=<name> FORCE=1)")
    print(f"  upload: kaggle datasets create -p {out} --dir-mode zip   (a new version: kaggle datasets version -p {out} --dir-mode zip -m '...')")
