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
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from-scratch", action="store_true", help="exp001 trains without pretrained weights (default: fine-tunes ImageNet weights)")
    start.add_argument("--pretrained", action="store_true", help="exp001 fine-tunes ImageNet weights (the default)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    folder = new_competition(args.root, args.name, args.task, args.kaggle_slug, pretrained=not args.from_scratch)
    sized = _size_to_data(args.root, args.name, False if args.from_scratch else True if args.pretrained else None)
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
            + ("" if sized else f"  4. make experiment COMP={name}   exp001 sized to the data (image size, model, batch, epochs)\n")
            + f"  {4 if sized else 5}. make train COMP={name} EXP=exp001, or make baseline COMP={name} MINUTES=30 (everything, within 30 minutes)"
        )


def _size_to_data(root: Path, name: str, pretrained: bool | None) -> bool:
    """With data/<name>/train.csv there already, exp001 is sized to it (make experiment) when the default contract reads it.
    The imports are here: the template's hook runs this command with the standard library alone, before any data exists."""
    if not (root / "data" / name / "train.csv").is_file():
        return False
    from solver.base.errors import SolverError
    from solver.commands.experiment import headline, write_sized_experiment
    from solver.competition.contract import Competition

    try:
        comp = Competition.load(root, name)
        write_sized_experiment(comp, "exp001", pretrained, force=True)
    except SolverError as err:
        print(f"exp001 is the generic recipe: data/{name}/ does not fit the new contract yet ({err});")
        print(f"complete {root / name / 'competition.yaml'}, then make experiment COMP={name}")
        return False
    print(f"exp001 is sized to data/{name}/: {headline(comp, 'exp001')}")
    return True
