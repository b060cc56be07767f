"""Write an experiment sized to the competition's data and this device: image size, model, batch size, epochs.

make experiment COMP=c   after the data is in data/<c>/: profiles it (sizes, channels, counts, classes and their
                         balance) and writes <c>/configs/exp001.yaml, each value with a comment saying why; an exp001
                         you edited is kept and the next free name (exp002, ...) is written instead

python -m solver experiment --comp c [--name exp003] [--pretrained | --from-scratch] [--force]
"""

from solver.base.cli import make_parser
from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.competition.profile import profile_data
from solver.competition.scaffold import is_generic_experiment
from solver.train.sizing import next_free_name, sized_experiment


def write_sized_experiment(comp: Competition, name: str | None = None, pretrained: bool | None = None, force: bool = False) -> str:
    """Profile the data, write <comp>/configs/<name>.yaml, return the name. No name: exp001 when it is absent or still the
    scaffold's generic file, else the next free expNNN. A name that exists is refused unless force."""
    configs = comp.folder / "configs"
    if name is None:
        first = configs / "exp001.yaml"
        name = "exp001" if not first.exists() or is_generic_experiment(comp.name, first.read_text()) else next_free_name(configs)
    elif (configs / f"{name}.yaml").exists() and not force and not is_generic_experiment(comp.name, (configs / f"{name}.yaml").read_text()):
        raise SolverError(f"{configs / f'{name}.yaml'} exists; nothing was written. Give another name (EXP=..) or FORCE=1 to replace it")
    profile = profile_data(comp)
    text = sized_experiment(profile, comp.cfg.n_folds, comp.name, pretrained=pretrained)
    configs.mkdir(parents=True, exist_ok=True)
    (configs / f"{name}.yaml").write_text(text)
    return name


def headline(comp: Competition, name: str) -> str:
    """The first comment line of a sized experiment: what the data looks like and the device it was sized for."""
    return (comp.folder / "configs" / f"{name}.yaml").read_text().split("\n", 1)[0].removeprefix("# ")


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "experiment", exp=False)
    parser.add_argument("--name", help="the experiment's name (default: exp001, or the next free expNNN when exp001 was edited)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--pretrained", dest="pretrained", action="store_true", default=None, help="fine-tune ImageNet weights")
    start.add_argument("--from-scratch", dest="pretrained", action="store_false", help="learn from scratch")
    parser.add_argument("--force", action="store_true", help="replace an existing file of that name")
    args = parser.parse_args(argv)
    comp = Competition.load(args.root, args.comp)
    name = write_sized_experiment(comp, args.name, args.pretrained, args.force)
    path = comp.folder / "configs" / f"{name}.yaml"
    print(headline(comp, name))
    print(f"wrote {path}: make train COMP={comp.name} EXP={name}  (or make baseline COMP={comp.name} MINUTES=30)")
