"""Typed configuration: the competition contract and experiments.

Two kinds of YAML file, both validated strictly (an unknown key or a wrong type is an error that names
the key and the file):

- `<competition>/competition.yaml` declares where the Kaggle files are, the columns, the task, the metric
  and the submission format (`CompetitionConfig`).
- `<competition>/configs/<experiment>.yaml` holds only what differs from the defaults of
  `ExperimentConfig`; `key=value` overrides (dotted keys, YAML values) apply on top for quick sweeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from solver.base.errors import did_you_mean
from solver.config.loader import Strict, deep_merge, parse_overrides, read_yaml, validate

# ----------------------------------------------------------------------------------------------------------
# Experiments: defaults here, differences in the experiment file


class ModelSpec(Strict):
    name: str = "resnet18"  # any timm model name, with a pretrained tag for model.pretrained, e.g. resnet18.a1_in1k
    # timm's pretrained weights of that tag (untagged: timm's default tag), through the Hugging Face hub and its cache
    pretrained: bool = False
    weights: str | None = None  # local .pth/.pt/.safetensors file; None (and pretrained false) trains from scratch
    drop_rate: float = Field(0.0, ge=0, lt=1)
    kwargs: dict[str, Any] = {}  # passed to timm.create_model

    @model_validator(mode="after")
    def _one_start(self) -> ModelSpec:
        if self.pretrained and self.weights:
            raise ValueError("pretrained and weights are both set: start from timm's pretrained weights or from your file, not both; remove one")
        return self


class DataSpec(Strict):
    image_size: int = Field(224, gt=0)  # pixels, square
    batch_size: int = Field(32, gt=0)
    # DataLoader worker processes; auto: on CUDA the cores per process less one (at most 8), on the CPU 0
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    cache_images: bool = False  # decode every image once into memory (small data sets)
    mean: list[float] | None = None  # per channel, in [0, 1]; default: the model's ImageNet statistics
    std: list[float] | None = None


class AugmentSpec(Strict):
    # albumentations transforms by class name with their arguments (crop sizes follow the stage: data.build_transform), e.g.
    #   - {name: Affine, p: 0.5, rotate: [-10, 10]}
    train: list[dict[str, Any]] = []


SCHEDULES = ("plateau", "constant", "cyclic", "cosine", "cosine_restarts", "onecycle", "step")


class ScheduleSpec(Strict):
    """An LR schedule, built from torch.optim.lr_scheduler (solver/nn/schedules.py)."""

    name: Literal["plateau", "constant", "cyclic", "cosine", "cosine_restarts", "onecycle", "step"] = "plateau"
    interval: Literal["step", "epoch"] | None = None  # default: per batch for cyclic/onecycle, per epoch for the rest
    warmup_steps: int = Field(0, ge=0)  # linear warmup (LinearLR) over this many optimizer steps ...
    warmup_epochs: float = Field(0, ge=0)  # ... or epochs
    warmup_start_factor: float = Field(0.01, gt=0, le=1)  # warmup starts at lr * this
    min_lr: float = Field(1e-6, ge=0)  # plateau's floor; cosine's eta_min
    # plateau (ReduceLROnPlateau)
    monitor: Literal["metric", "loss"] = "metric"  # the competition metric or the validation loss
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(2, ge=0)  # epochs without improvement before lr *= factor
    # cyclic (CyclicLR between base_lr and the stage's lr)
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"  # triangular2: amplitude halves each cycle
    base_lr: float | None = Field(None, gt=0)  # default: lr / 10
    half_cycle_epochs: float = Field(2.0, gt=0)  # epochs from base_lr up to lr (step_size_up)
    gamma: float = Field(0.9999, gt=0, le=1)  # exp_range: amplitude *= gamma every step
    # onecycle (OneCycleLR up to the stage's lr over the whole stage)
    pct_start: float = Field(0.3, gt=0, lt=1)
    div_factor: float = Field(25.0, gt=1)
    final_div_factor: float = Field(1e4, gt=1)
    # cosine_restarts (CosineAnnealingWarmRestarts)
    restart_epochs: float = Field(5, gt=0)  # first cycle length
    restart_mult: int = Field(1, ge=1)  # each cycle is this many times longer
    # step (StepLR)
    step_epochs: float = Field(10, gt=0)
    step_gamma: float = Field(0.1, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _name_first(cls, data: Any) -> Any:
        # A bad name is the first thing to report, with the valid ones listed.
        if isinstance(data, dict) and "name" in data and data["name"] not in SCHEDULES:
            raise ValueError(f"unknown schedule '{data['name']}'; valid: {', '.join(SCHEDULES)}")
        return data


class StageSpec(Strict):
    """One stage of a curriculum; what it does not set comes from data/train."""

    epochs: int = Field(gt=0)
    image_size: int | None = Field(None, gt=0)  # pixels; default data.image_size
    aug_p: float | tuple[float, float] = 1.0  # probability of the training augmentations, or [start, end] ramped over the stage
    mixup_alpha: float | None = Field(None, ge=0)  # default train.mixup_alpha; 0 is off
    cutmix_alpha: float | None = Field(None, ge=0)
    lr: float | None = Field(None, gt=0)  # default train.lr
    schedule: ScheduleSpec | None = None  # default train.schedule
    continue_schedule: bool = False  # keep the previous stage's schedule running instead of restarting it

    @model_validator(mode="after")
    def _check_ramp(self) -> StageSpec:
        ramp = self.aug_p if isinstance(self.aug_p, tuple) else (self.aug_p, self.aug_p)
        if not all(0 <= p <= 1 for p in ramp):
            raise ValueError(f"aug_p must be within [0, 1], got {self.aug_p}")
        return self


class TrainSpec(Strict):
    epochs: int = Field(20, gt=0)  # with stages: their sum
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0)  # per batch as configured (no implicit scaling by batch size)
    weight_decay: float = Field(0.0, ge=0)  # never applied to norms and biases
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    nesterov: bool = True  # sgd only
    schedule: ScheduleSpec = ScheduleSpec()
    stages: list[StageSpec] | None = None  # a curriculum; None is one stage of `epochs`
    mixup_alpha: float = Field(0.0, ge=0)  # x' = l*x_i + (1-l)*x_j, y' likewise, l ~ Beta(alpha, alpha); 0 is off
    cutmix_alpha: float = Field(0.0, ge=0)  # with both > 0, each batch picks one (timm's Mixup)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, off on the CPU
    accumulation_steps: int = Field(1, ge=1)  # optimizer step every N batches
    clip_grad_norm: float | None = Field(None, gt=0)
    ema_decay: float | None = Field(None, gt=0, lt=1)  # an EMA of the weights (timm ModelEmaV3), evaluated alongside
    channels_last: bool = False
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # multi-GPU (torchrun): BatchNorm statistics over every GPU's batch (SyncBatchNorm); CUDA only
    early_stopping_patience: int | None = Field(5, ge=1)  # epochs without improvement (within a stage); None trains all
    time_budget_minutes: float | None = Field(None, gt=0)  # stop a fold after the epoch that crosses this much training time
    seed: int = 42
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    deterministic: bool = True  # same seed, same weights (bitwise on the CPU)
    folds: list[int] | None = None  # which folds to train; None trains all
    # best: the epoch, EMA or raw weights and early stopping chosen on the validation fold (its OOF is slightly optimistic);
    # last: the last epoch's weights (EMA when ema_decay is set), no early stopping, no plateau: an unbiased OOF for level 2
    select: Literal["best", "last"] = "best"

    @model_validator(mode="after")
    def _check_stages(self) -> TrainSpec:
        if self.stages:
            total = sum(stage.epochs for stage in self.stages)
            if "epochs" in self.model_fields_set and total != self.epochs:
                raise ValueError(f"stages add up to {total} epochs but train.epochs is {self.epochs}; make them equal or drop train.epochs")
            self.epochs = total
        if self.select == "last" and any((stage.schedule or self.schedule).name == "plateau" for stage in self.stages or [self]):
            raise ValueError(
                "train.select: last keeps the validation fold out of every training decision, but schedule 'plateau' (the default) "
                "lowers the lr on its score; set train.schedule.name to cosine, step, onecycle, cyclic or constant"
            )
        return self

    def resolved_stages(self, image_size: int) -> list[StageSpec]:
        """The curriculum with every default filled in (one stage when none is declared)."""
        stages = self.stages or [StageSpec(epochs=self.epochs)]
        return [
            stage.model_copy(
                update={
                    "image_size": stage.image_size or image_size,
                    "mixup_alpha": self.mixup_alpha if stage.mixup_alpha is None else stage.mixup_alpha,
                    "cutmix_alpha": self.cutmix_alpha if stage.cutmix_alpha is None else stage.cutmix_alpha,
                    "lr": stage.lr or self.lr,
                    "schedule": stage.schedule or self.schedule,
                }
            )
            for stage in stages
        ]


class TtaSpec(Strict):
    """Test-time augmentation for `make predict TTA=N` (solver/predict/tta.py)."""

    views: int = Field(8, ge=1, le=1024)  # views per image, the plain one included
    combine: Literal["probabilities", "logits", "geometric"] = "probabilities"
    augment: list[dict[str, Any]] | None = None  # albumentations transforms as in augment.train; default: augment.train
    include_plain: bool = True  # the first view is the un-augmented image
    seed: int = 0


KNN_SPACES = ("cosinesimil", "l2")
KNN_FEATURES = ("label_distribution", "class_distance", "topk_distance")


class KnnSpec(Strict):
    """kNN features from the experiment's embeddings for `make knn` (solver/level2/knn.py)."""

    k: int = 10  # neighbours per query
    space: str = "cosinesimil"  # one of KNN_SPACES: distance 1 - cos, or Euclidean distance
    M: int = Field(16, ge=2)  # HNSW graph degree
    ef_construction: int = 200  # HNSW build beam width
    ef_search: int = 100  # HNSW query beam width (raised to k when smaller)
    exact_below: int = 100_000  # smaller indexes are searched exactly (numpy): faster than building a graph with the SIMD-less nmslib wheel
    features: tuple[str, ...] = KNN_FEATURES  # which groups of KNN_FEATURES knn_features returns, in this order

    @field_validator("space", mode="before")
    @classmethod
    def _known_space(cls, value: Any) -> Any:
        if value not in KNN_SPACES:
            raise ValueError(f"knn space '{value}' is unknown; {did_you_mean(value, KNN_SPACES)}")
        return value

    @field_validator("features", mode="before")
    @classmethod
    def _known_features(cls, value: Any) -> Any:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ValueError(f"knn features must be a list of names, got {value!r}; valid: {', '.join(KNN_FEATURES)}")
        if not value:
            raise ValueError(f"knn features is empty; choose one or more of: {', '.join(KNN_FEATURES)}")
        for name in value:
            if name not in KNN_FEATURES:
                raise ValueError(f"knn feature '{name}' is unknown; {did_you_mean(name, KNN_FEATURES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"knn features {list(value)} repeat a name; list each feature once")
        return tuple(value)  # a list from a config file becomes hashable

    @field_validator("k", "ef_construction", "ef_search")
    @classmethod
    def _positive(cls, value: int, info: ValidationInfo) -> int:
        if value < 1:
            raise ValueError(f"knn {info.field_name}={value!r} must be a positive integer")
        return value

    @field_validator("exact_below")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"knn exact_below={value!r} must be an integer >= 0 (0: always use HNSW)")
        return value


class PseudoSpec(Strict):
    """Fold-safe pseudo-labels for `make pseudo` (solver/level2/pseudo.py): fold k retrains with the test rows its own model labelled."""

    threshold: float | None = Field(None, gt=0, le=1)  # keep test rows predicted at least this confidently (default 0.9)
    top_fraction: float | None = Field(None, gt=0, le=1)  # or the most confident fraction of the test rows
    labels: Literal["hard", "soft"] = "hard"  # hard: the predicted class; soft: the predicted probabilities
    weight: float = Field(1.0, gt=0)  # a pseudo row's share of the loss against a training row's (multiclass)
    epochs: int | None = Field(None, gt=0)  # the retrain's train.epochs (default: the experiment's)

    @model_validator(mode="after")
    def _one_selection(self) -> PseudoSpec:
        if self.threshold is not None and self.top_fraction is not None:
            raise ValueError(f"set pseudo.threshold ({self.threshold}) or pseudo.top_fraction ({self.top_fraction}), not both")
        return self


class TrackSpec(Strict):
    """Experiment tracking beside TensorBoard (solver/train/tracking.py)."""

    mlflow: bool = False  # log params (the resolved config), per-epoch metrics and the score to MLflow
    uri: str | None = None  # an MLflow tracking server (http://host:5000) or store; default: a file store in runs/<comp>/mlruns
    experiment: str | None = None  # the MLflow experiment; default: the competition's name


class TuneParamSpec(Strict):
    """The range of one dotted config key searched by `make tune`: low/high (float or int, log scale), or choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False  # sample on a log scale (learning rates, weight decay)
    step: float | None = Field(None, gt=0)  # a grid within [low, high]
    type: Literal["float", "int", "categorical"] | None = None  # default: categorical with choices, int when low and high are integers
    choices: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        # YAML reads `low: 8` as an integer: an integer range unless the type says float.
        if isinstance(data, dict) and data.get("type") is None:
            if data.get("choices") is not None:
                data = {**data, "type": "categorical"}
            elif all(isinstance(data.get(k), int) and not isinstance(data.get(k), bool) for k in ("low", "high")):
                data = {**data, "type": "int"}
            else:
                data = {**data, "type": "float"}
        return data

    @model_validator(mode="after")
    def _check_range(self) -> TuneParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("choices is empty; list at least two values, e.g. choices: [resnet10t, resnet18]")
            return self
        if self.choices is not None:
            raise ValueError(f"choices with type {self.type}: give choices or low/high, not both")
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or choices), e.g. {low: 1.0e-4, high: 1.0e-2, log: true}")
        if not self.low < self.high:
            raise ValueError(f"the range [{self.low}, {self.high}] is empty; low must be below high")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got low {self.low}")
        return self


class TuneSpec(Strict):
    """`make tune`: an Optuna search over dotted config keys (solver/train/tune.py)."""

    params: dict[str, TuneParamSpec] = {}  # e.g. {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}, model.name: {choices: [...]}}
    trials: int = Field(20, ge=1)  # finished (complete or pruned) trials the study holds at the end; TRIALS= overrides
    folds: list[int] = [0]  # the folds each trial trains; the objective is the mean of their best scores
    prune_fold: int | None = None  # the fold whose per-epoch metric the pruner watches; default: the first of folds
    pruner: Literal["median", "none"] = "median"  # MedianPruner: stop a trial worse than the median of earlier ones at that epoch
    startup_trials: int = Field(3, ge=0)  # trials that finish before any pruning
    warmup_epochs: int = Field(1, ge=0)  # the first epochs of each trial, never pruned
    storage: str | None = None  # an Optuna RDB URL (postgresql://user:pass@host/db) shared by machines; default: sqlite in runs/<comp>/
    study: str | None = None  # default: the experiment's name
    seed: int | None = None  # the sampler's seed (TPE); None: a different search each run

    @model_validator(mode="after")
    def _check_folds(self) -> TuneSpec:
        if not self.folds:
            raise ValueError("folds is empty; list the folds each trial trains, e.g. [0]")
        if self.prune_fold is not None and self.prune_fold not in self.folds:
            raise ValueError(f"prune_fold {self.prune_fold} is not one of folds {self.folds}")
        return self


class ExperimentConfig(Strict):
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    augment: AugmentSpec = AugmentSpec()
    train: TrainSpec = TrainSpec()
    tta: TtaSpec = TtaSpec()
    knn: KnnSpec = KnnSpec()
    pseudo: PseudoSpec = PseudoSpec()
    track: TrackSpec = TrackSpec()
    tune: TuneSpec = TuneSpec()

    @model_validator(mode="after")
    def _check_mixup_batch(self) -> ExperimentConfig:
        stages = self.train.resolved_stages(self.data.image_size)
        if any(s.mixup_alpha or s.cutmix_alpha for s in stages) and self.data.batch_size % 2:
            raise ValueError(f"MixUp/CutMix pairs each batch with its reverse: data.batch_size must be even, got {self.data.batch_size}")
        return self


def load_experiment_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    data = read_yaml(path)
    source = str(path)
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        source = f"{path} with overrides {' '.join(overrides)}"
    return validate(ExperimentConfig, data, source)
