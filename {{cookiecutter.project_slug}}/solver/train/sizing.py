"""A first experiment sized to the data and the device, with a comment on every value saying why it was chosen.

`make experiment COMP=c` (and `make competition` when data/<c>/ is already there, and `make baseline` for its own
baseline.yaml) profiles the data (solver/competition/profile.py) and writes configs/<name>.yaml:

- image size: the native size rounded up to a multiple of 32 (a stride-32 network then ends on whole pixels), at
  least 32 (64 for pretrained weights, whose filters expect larger objects), at most what the device trains in an
  afternoon; never the 224 px of an ImageNet recipe for 28 px images;
- model: timm's ImageNet weights when they are in the Hugging Face cache or the hub answers (nn/models.py
  weights_available), else the from-scratch curriculum of the digits demo; a smaller network on the CPU;
- batch size: by image size and device, at most a tenth of a fold's training rows (ten steps an epoch);
- epochs: about 2,500 optimizer steps fine-tuning, 4,000 from scratch, within [5, 30] and [10, 60] epochs;
- images decoded once into memory when they fit in 2 GB.

The recipe is a strong start, not a tuned result: `make tune` searches around it, `make baseline` compresses it to a
time budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from solver.competition.profile import DataProfile
from solver.nn.models import weights_available

STEPS_FINE_TUNE, EPOCHS_FINE_TUNE = 2500, (5, 30)
STEPS_FROM_SCRATCH, EPOCHS_FROM_SCRATCH = 4000, (10, 60)
CACHE_BYTES = 2 << 30  # decoded images kept in memory up to this size


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" or "cuda"
    memory_gb: float = 0.0  # GPU memory

    @classmethod
    def detect(cls) -> Device:
        if torch.cuda.is_available():
            return cls("cuda", torch.cuda.get_device_properties(0).total_memory / 2**30)
        return cls("cpu")

    def describe(self) -> str:
        return f"CUDA ({self.memory_gb:.0f} GB)" if self.kind == "cuda" else "the CPU"


@dataclass(frozen=True)
class Choice:
    value: object
    why: str


def _round_up(value: float, multiple: int) -> int:
    return int(-(-value // multiple) * multiple)


def choose_model(device: Device, pretrained: bool | None) -> tuple[Choice, bool]:
    """(the model, pretrained?); pretrained None: when the weights can be had."""
    name = "resnet50.a1_in1k" if device.kind == "cuda" else "resnet18.a1_in1k"
    if pretrained is None:
        pretrained, why = weights_available(name)
    else:
        why = "asked for" if pretrained else "PRETRAINED=0: learning from scratch"
    if pretrained:
        size = "ResNet-50: fits any GPU at these batch sizes" if device.kind == "cuda" else "ResNet-18: a pretrained network the CPU trains"
        return Choice(name, f"{size}; {why}"), True
    scratch = "resnet18" if device.kind == "cuda" else "resnet10t"
    size = "ResNet-18" if device.kind == "cuda" else "ResNet-10t, the smallest ResNet (fast on the CPU)"
    return Choice(scratch, f"{size} from scratch: {why}"), False


def choose_image_size(profile: DataProfile, device: Device, pretrained: bool) -> Choice:
    native = profile.native_size
    floor = 64 if pretrained else 32
    ceiling = 384 if device.kind == "cuda" else 224
    size = min(max(_round_up(native, 32), floor), ceiling)
    if size > native:
        why = f"the native {native} px rounded up to {size}" + (" (pretrained filters need at least 64)" if size == 64 and pretrained else "")
    elif size < native:
        why = f"the native {native} px cut to {size}, what {device.describe()} trains in an afternoon (raise it on a bigger device)"
    else:
        why = f"the native {native} px"
    return Choice(size, why)


def choose_batch_size(profile: DataProfile, device: Device, image_size: int, n_folds: int) -> Choice:
    if device.kind == "cuda":
        batch = 256 if image_size <= 64 else 128 if image_size <= 128 else 64 if image_size <= 256 else 32
        if device.memory_gb < 16:
            batch //= 2
        why = f"{image_size} px on {device.describe()}"
    else:
        batch = 64 if image_size <= 64 else 32 if image_size <= 160 else 16
        why = f"{image_size} px on the CPU"
    fold_rows = profile.n_train * (n_folds - 1) // n_folds
    wanted = batch
    while batch > 16 and batch * 10 > fold_rows:
        batch //= 2
    if batch < wanted:
        why += f", halved to {batch} for {fold_rows} training rows a fold (ten steps an epoch)"
    return Choice(batch, why)


def choose_epochs(profile: DataProfile, batch_size: int, n_folds: int, pretrained: bool) -> Choice:
    steps, (low, high) = (STEPS_FINE_TUNE, EPOCHS_FINE_TUNE) if pretrained else (STEPS_FROM_SCRATCH, EPOCHS_FROM_SCRATCH)
    per_epoch = max(1, profile.n_train * (n_folds - 1) // n_folds // batch_size)
    epochs = min(max(round(steps / per_epoch), low), high)
    why = f"about {steps} optimizer steps at {per_epoch} a fold's epoch" + (f", within [{low}, {high}]" if epochs in (low, high) else "")
    return Choice(epochs, why)


def split_stages(epochs: int, pretrained: bool) -> list[int]:
    """Epochs per curriculum stage: from scratch small images / full size with MixUp / a clean fine-tune (25/60/15%);
    pretrained: augmented / a clean fine-tune (85/15%). The fine-tune keeps at least one epoch."""
    if pretrained:
        clean = max(1, round(0.15 * epochs))
        return [epochs - clean, clean]
    small, clean = max(1, round(0.25 * epochs)), max(1, round(0.15 * epochs))
    return [small, epochs - small - clean, clean]


def _stage(epochs: int, rest: str) -> str:
    """One stage as a YAML flow mapping (written by concatenation: the template's copy check refuses doubled braces)."""
    return "    - {epochs: " + str(epochs) + ", " + rest + "}"


def sized_experiment(profile: DataProfile, n_folds: int, comp_name: str, device: Device | None = None, pretrained: bool | None = None) -> str:
    """The experiment YAML text, each value with its reason."""
    device = device or Device.detect()
    model, pretrained = choose_model(device, pretrained)
    size = choose_image_size(profile, device, pretrained)
    batch = choose_batch_size(profile, device, size.value, n_folds)
    epochs = choose_epochs(profile, batch.value, n_folds, pretrained)
    stages = split_stages(epochs.value, pretrained)
    decoded = profile.n_train * profile.height * profile.width * profile.channels
    cache = decoded < CACHE_BYTES
    lines = [
        f"# First experiment of {comp_name}, sized to its data by make experiment: {profile.describe()}; trained on {device.describe()}.",
        "# Each value says why it was chosen; everything else is solver/config/experiment.py's default.",
        f"# make train COMP={comp_name} EXP=<this file's name>   (make plan draws the LR of every stage; make baseline fits it to a time budget)",
        "model:",
        f"  name: {model.value}   # {model.why}",
        f"  pretrained: {'true' if pretrained else 'false'}",
        "data:",
        f"  image_size: {size.value}   # {size.why}",
        f"  batch_size: {batch.value}   # {batch.why}",
        f"  cache_images: {'true' if cache else 'false'}   # the decoded images take {decoded / 2**20:,.0f} MB"
        + (": decoded once, kept in memory" if cache else f": over {CACHE_BYTES >> 30} GB, decoded every epoch"),
        "augment:",
        "  train:",
        "    # small shifts, scales and turns keep almost any class; add {name: HorizontalFlip, p: 0.5} when a mirrored image",
        "    # keeps its class (photos, cells; not digits or text)",
        "    - {name: Affine, p: 0.8, scale: [0.9, 1.1], translate_percent: [-0.06, 0.06], rotate: [-10, 10]}",
        "    - {name: RandomBrightnessContrast, p: 0.3}",
        "train:",
    ]
    if pretrained:
        lines += [
            "  optimizer: adamw",
            "  lr: 5.0e-4   # fine-tuning: pretrained weights move gently; a new image size and domain need more than 1e-4",
            "  weight_decay: 0.01",
            "  schedule: {name: cosine, warmup_epochs: 1}   # the new classifier starts random: a warmup spares the backbone its first gradients",
            f"  stages:   # {epochs.value} epochs: {epochs.why}",
            _stage(stages[0], "aug_p: 0.8"),
            "    # a clean fine-tune at a tenth of the LR: the network ends on images like the test's",
            _stage(stages[1], "aug_p: 0.0, lr: 5.0e-5, schedule: {name: cosine}"),
        ]
    else:
        small = max(16, _round_up(size.value // 2, 16))
        lines += [
            "  optimizer: adamw   # decoupled weight decay: the regularisation random weights need",
            "  lr: 2.0e-3   # random weights must move far: 20x a fine-tuning LR",
            "  weight_decay: 0.05",
            "  schedule: {name: cosine, warmup_epochs: 2}   # one decay over stages 1-2, after a warmup for the unstable first steps",
            f"  stages:   # {epochs.value} epochs: {epochs.why}",
            f"    # 1. {small} px first: faster epochs while the network learns coarse shapes; augmentation ramps up",
            _stage(stages[0], f"image_size: {small}, aug_p: [0.3, 0.8]"),
            "    # 2. full size, strong augmentation and MixUp: the longest stage, where overfitting would start",
            _stage(stages[1], "aug_p: 0.8, mixup_alpha: 0.2, continue_schedule: true"),
            "    # 3. a clean fine-tune at a tenth of the LR: the network ends on images like the test's",
            _stage(stages[2], "aug_p: 0.0, lr: 2.0e-4, schedule: {name: cosine}"),
        ]
    lines.append("  early_stopping_patience: null   # a cosine schedule is meant to run to its end")
    if profile.imbalance > 10:
        lines.append(
            f"# the classes are imbalanced ({profile.imbalance:.0f}x between the largest and the smallest): check that the metric in "
            "competition.yaml is the competition's, and consider make adapt's prior shift"
        )
    return "\n".join(lines) + "\n"


def next_free_name(configs: Path, stem: str = "exp") -> str:
    """exp001, exp002, ...: the first name without a file in configs/."""
    n = 1
    while (configs / f"{stem}{n:03d}.yaml").exists():
        n += 1
    return f"{stem}{n:03d}"
