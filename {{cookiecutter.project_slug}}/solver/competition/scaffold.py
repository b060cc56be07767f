"""A new competition folder: <name>/competition.yaml (the data contract) and <name>/configs/exp001.yaml.

The one source of the per-competition files: `make competition COMP=x TASK=multilabel [PRETRAINED=0]` calls it, and so does
the template's post-generation hook for the first competition. Standard library only (the hook runs it with
cookiecutter's Python, before this repository's dependencies are installed).
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from pathlib import Path
from string import Template

from solver.base.errors import SolverError

TASKS = ("multiclass", "multilabel")
# Folders of the repository itself; a competition of that name would mix with them.
RESERVED = {"bin", "solver", "tests", "data", "runs", "build", "benchmarks"}

HEADER = Template("""\
# The data contract of $name. Fill in what the competition's data page says, then
# `make download COMP=$name` (with kaggle_slug set) and `make check-data COMP=$name` checks every file against it.
name: $name
task: $task
""")

KAGGLE = Template("""\
kaggle_slug: "$slug"   # the competition's name in its Kaggle URL (make download, make submit KAGGLE=1)
""")

NO_KAGGLE = """\
# kaggle_slug: the-competition-slug   # the name in the competition's Kaggle URL (make download, make submit KAGGLE=1)
"""

FILES = Template("""\
# data_dir: data/$name   # default; put the Kaggle files here
train_csv: train.csv
test_csv: test.csv
sample_submission: sample_submission.csv
train_images: train          # image folders under data_dir
test_images: test
image_pattern: "{id}.png"    # file name of a sample's image; {id} is its id
# image_channels: ["{id}_red.png", "{id}_green.png", "{id}_blue.png"]   # instead of image_pattern (drop it): one grayscale file per channel
id_column: id
""")

MULTICLASS = """\
target: label                # one column of labels (text or integers)
metric: accuracy             # accuracy, log_loss, macro_f1, micro_f1, roc_auc, quadratic_kappa, or "metric.py:score"
submission:
  format: label              # label: the predicted class; probabilities: one column per class
"""

MULTILABEL = """\
target: Target               # space-separated label ids ("0 5 25"), or a list of 0/1 columns: [cat, dog, ...]
metric: macro_f1             # macro_f1, micro_f1, accuracy, log_loss, roc_auc, average_precision, or "metric.py:score"
submission:
  format: labels             # labels: space-separated ids; binary_columns: one 0/1 column per label
  threshold: 0.5             # emit a label when its probability is above this
"""

FOOTER = """\
# classes: [...]             # default: every label seen in train.csv, sorted
# group_column: patient_id   # keep a group's rows in one fold
n_folds: 5
fold_seed: 42
"""

AUGMENT = """\
augment:
  train:
    - {name: HorizontalFlip, p: 0.5}
    - {name: Affine, p: 0.5, scale: [0.9, 1.1], rotate: [-15, 15]}
    - {name: RandomBrightnessContrast, p: 0.3}
"""

# Fine-tuning ImageNet weights (the default): the weights already see edges and textures, so a low LR adapts them.
PRETRAINED = Template(
    """\
# First experiment of $name: only what differs from solver/config/experiment.py's defaults.
# make train COMP=$name EXP=exp001
model:
  name: resnet18.a1_in1k    # any timm model; the tag after the dot names its weights, e.g. timm.list_pretrained('resnet18*')
  pretrained: true          # timm's ImageNet weights from the Hugging Face cache (README: pretrained weights); false: from scratch
data:
  image_size: 224           # the size the weights were trained at
  batch_size: 32
  # num_workers: auto       # default: on CUDA the cores less one (at most 8), on the CPU 0
"""
    + AUGMENT
    + """\
train:
  epochs: 20
  lr: 1.0e-4                # Adam, the default optimizer, at 1e-4: fine-tuning moves pretrained weights gently
  schedule:
    name: plateau           # halve the LR when the metric stalls; cyclic, cosine, onecycle, step, ...
    warmup_epochs: 1        # the new classifier starts random: a short warmup keeps its first gradients off the backbone
  early_stopping_patience: 5
"""
)

# From scratch (make competition PRETRAINED=0): random weights need a higher LR, more epochs and more regularisation;
# the curriculum of digits/configs/exp001_resnet10t.yaml (small images, then full size with MixUp, then a clean fine-tune).
FROM_SCRATCH = Template(
    """\
# First experiment of $name, from scratch (no pretrained weights): only what differs from solver/config/experiment.py's defaults.
# make train COMP=$name EXP=exp001   (make plan COMP=$name EXP=exp001 draws the LR of every stage)
model:
  name: resnet18            # any timm model; a small one learns fastest without pretrained weights
  pretrained: false         # true, with a tag (resnet18.a1_in1k), fine-tunes ImageNet weights instead
data:
  image_size: 224
  batch_size: 64            # larger batches steady BatchNorm statistics of random weights (and MixUp needs an even size)
  # num_workers: auto       # default: on CUDA the cores less one (at most 8), on the CPU 0
"""
    + AUGMENT
    + """\
train:
  optimizer: adamw          # decoupled weight decay: the regularisation a network without a prior needs
  lr: 2.0e-3                # 20x the fine-tuning LR: random weights must move far (digits learns at 3e-3, batch 64)
  weight_decay: 0.05        # AdamW's usual value from scratch (never applied to norms and biases)
  schedule:
    name: cosine            # one decay from lr to min_lr over stages 1-2 (stage 2 continues it)
    warmup_epochs: 2        # the first steps of random weights are the most unstable: ramp the LR up over two epochs
  stages:
    # 1. small images first: about 3x faster epochs while the network learns coarse shapes; augmentation ramps up
    - {epochs: 10, image_size: 128, aug_p: [0.3, 0.8]}
    # 2. full size, strong augmentation and MixUp: the longest stage, where overfitting would start
    - {epochs: 25, aug_p: 0.8, mixup_alpha: 0.2, continue_schedule: true}
    # 3. a short fine-tune on clean images at a tenth of the LR: the network ends on images like the test's
    - {epochs: 5, aug_p: 0.0, lr: 2.0e-4, schedule: {name: cosine}}
  early_stopping_patience: null   # a cosine schedule is meant to run to its end (MixUp makes the metric noisy early)
"""
)


def experiment_yaml(name: str, pretrained: bool = True) -> str:
    return (PRETRAINED if pretrained else FROM_SCRATCH).substitute(name=name)


def is_generic_experiment(name: str, text: str) -> bool:
    """The text is exp001 as the scaffold writes it (either start), never edited: make experiment may replace it."""
    return text in {experiment_yaml(name, pretrained) for pretrained in (True, False)}


def check_name(root: Path, name: str) -> None:
    """A competition name is a lowercase Python identifier, not one of the repository's folders, not taken."""
    if not name:
        raise SolverError("no competition name: give one, e.g. make competition COMP=protein_atlas TASK=multilabel")
    if not name.isidentifier() or keyword.iskeyword(name) or name != name.lower():
        raise SolverError(
            f"competition name '{name}' is invalid: it must be a lowercase Python identifier (letters, digits, '_'), e.g. protein_atlas"
        )
    if name in RESERVED:
        raise SolverError(
            f"competition name '{name}' clashes with the repository's own folder of that name ({', '.join(sorted(RESERVED))} are taken)"
        )
    if (Path(root) / name).exists():
        raise SolverError(f"{Path(root) / name} already exists; nothing was changed. Choose another name (or delete the folder first)")


def competition_yaml(name: str, task: str, kaggle_slug: str | None = None) -> str:
    if task not in TASKS:
        raise SolverError(f"task '{task}' is not supported; use one of {', '.join(TASKS)}")
    if kaggle_slug is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", kaggle_slug):
        raise SolverError(f"kaggle slug '{kaggle_slug}' is invalid: give the name in the competition's URL, e.g. digit-recognizer")
    # string.Template ($name) leaves the braces of image_pattern and of the YAML flow mappings alone.
    text = HEADER.substitute(name=name, task=task)
    text += KAGGLE.substitute(slug=kaggle_slug) if kaggle_slug else NO_KAGGLE
    text += FILES.substitute(name=name)
    text += MULTICLASS if task == "multiclass" else MULTILABEL
    return text + FOOTER


def new_competition(root: Path, name: str, task: str, kaggle_slug: str | None = None, pretrained: bool = True) -> Path:
    """Write <root>/<name>/ for the task; refuse a bad or taken name. Written in a temporary folder, then renamed.
    pretrained: exp001 fine-tunes ImageNet weights; False: a from-scratch recipe."""
    root = Path(root)
    check_name(root, name)
    files = {"competition.yaml": competition_yaml(name, task, kaggle_slug), "configs/exp001.yaml": experiment_yaml(name, pretrained)}
    partial = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=root))
    try:
        for relative, text in files.items():
            (partial / relative).parent.mkdir(parents=True, exist_ok=True)
            (partial / relative).write_text(text)
        os.chmod(partial, 0o777 & ~_umask())  # mkdtemp makes a 0700 folder
        # If the name was taken meanwhile, rename refuses a non-empty folder: a user's files are never overwritten.
        os.rename(partial, root / name)
    except OSError as err:
        raise SolverError(f"cannot create {root / name}: {err}") from None
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return root / name


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
