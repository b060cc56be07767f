"""Add a competition folder: <name>/competition.yaml (the data contract) and <name>/configs/exp001.yaml.

The contract has comments saying what to fill in; exp001 fine-tunes ImageNet weights (resnet18.a1_in1k), or with
--from-scratch a recipe that learns without them. A name that exists or is not a lowercase identifier is refused, and
nothing is written.

python -m solver new-competition --name protein_atlas --task multilabel [--kaggle-slug human-protein-atlas-image-classification] [--from-scratch]

Standard library only: the template's post-generation hook runs it with cookiecutter's Python for the first competition.
"""

import argparse
from pathlib import Path

from solver.base.cli import PROG
from solver.competition.scaffold import TASKS, new_competition


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"{PROG} new-competition", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: current folder)")
    parser.add_argument("--name", required=True, help="the competition's folder, a lowercase identifier, e.g. protein_atlas")
    parser.add_argument("--task", choices=TASKS, default="multiclass")
    parser.add_argument("--kaggle-slug", help="the competition's name in its Kaggle URL (for make download / make submit KAGGLE=1)")
    parser.add_argument("--from-scratch", action="store_true", help="exp001 trains without pretrained weights (default: fine-tunes ImageNet weights)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    folder = new_competition(args.root, args.name, args.task, args.kaggle_slug, pretrained=not args.from_scratch)
    if not args.quiet:
        name = args.name
        print(
            f"created {folder}/competition.yaml and {folder}/configs/exp001.yaml "
            f"({args.task}, {'from scratch' if args.from_scratch else 'fine-tuning pretrained resnet18.a1_in1k'}). Next:\n"
            f"  1. complete {folder}/competition.yaml: columns, image folders and pattern, metric, submission format"
            + ("" if args.kaggle_slug else ", kaggle_slug")
            + "\n"
            f"  2. make download COMP={name}     (or put the Kaggle files in data/{name}/ by hand)\n"
            f"  3. make check-data COMP={name}   every problem of the files against the contract, at once\n"
            f"  4. make train COMP={name} EXP=exp001"
            + ("" if args.from_scratch else "   (the first run fetches the pretrained weights into the Hugging Face cache; offline: README)")
        )
