"""Typed configuration: the competition contract and experiments.

Two kinds of YAML file, both validated strictly (an unknown key or a wrong type is an error that names
the key and the file):

- `<competition>/competition.yaml` declares where the Kaggle files are, the columns, the task, the metric
  and the submission format (`CompetitionConfig`).
- `<competition>/configs/<experiment>.yaml` holds only what differs from the defaults of
  `ExperimentConfig`; `key=value` overrides (dotted keys, YAML values) apply on top for quick sweeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from solver.errors import SolverError, did_you_mean

Task = Literal["multiclass", "multilabel"]


class _Strict(BaseModel):
    # extra="forbid": a typo in a key must fail loudly instead of silently using a default.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# ----------------------------------------------------------------------------------------------------------
# The competition contract


class SubmissionSpec(_Strict):
    # label:          multiclass, the predicted class in the target column (Kaggle's most common format)
    # probabilities:  multiclass, one probability column per class (log-loss competitions)
    # labels:         multilabel, space-separated label ids in one column (Human Protein Atlas)
    # binary_columns: multilabel, one 0/1 column per label
    format: Literal["label", "probabilities", "labels", "binary_columns"] | None = None
    column: str | None = None  # the prediction column for label/labels; default: the target column
    threshold: float = Field(0.5, gt=0, lt=1)  # multilabel: emit a label when its probability is above this
    function: str | None = None  # custom code in the competition folder, "submission.py:make_submission"


class CompetitionConfig(_Strict):
    name: str
    task: Task
    data_dir: str | None = None  # relative to the repo root; default data/<name>
    train_csv: str = "train.csv"
    test_csv: str = "test.csv"
    sample_submission: str = "sample_submission.csv"
    train_images: str = "train"  # folder under data_dir
    test_images: str = "test"
    image_pattern: str = "{id}.png"  # file name inside the image folder; {id} is the id column's value
    # instead of image_pattern: one grayscale file per channel, stacked in this order (Human Protein Atlas),
    # e.g. ["{id}_red.png", "{id}_green.png", "{id}_blue.png", "{id}_yellow.png"]
    image_channels: list[str] | None = None
    id_column: str = "id"
    # multiclass: one column of labels (strings or integers);
    # multilabel: one column of space-separated label ids, or a list of 0/1 columns, one per label
    target: str | list[str]
    classes: list[str] | None = None  # default: every label seen in train.csv, sorted
    group_column: str | None = None  # rows sharing a group stay in one fold (patient, plate, ...)
    metric: str = "accuracy"  # a name from solver.metrics, or "metric.py:function" in the competition folder
    greater_is_better: bool | None = None  # required for a custom metric only
    n_folds: int = Field(5, ge=2)
    fold_seed: int = 42
    submission: SubmissionSpec = SubmissionSpec()
    holdout_answers: str | None = None  # demo only: test labels used to score, never to train
    kaggle_slug: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _classes_as_strings(cls, data: Any) -> Any:
        # Labels are compared as text everywhere (CSV round trips turn 3 into "3").
        if isinstance(data, dict) and isinstance(data.get("classes"), list):
            bad = [c for c in data["classes"] if isinstance(c, bool | float) or c is None]
            if bad:
                raise ValueError(f"classes: {bad[0]!r} is not a label as written; quote labels like yes, no, 1.5 or null in YAML")
            data = {**data, "classes": [str(c) for c in data["classes"]]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _one_image_layout(cls, data: Any) -> Any:
        if isinstance(data, dict) and "image_channels" in data and "image_pattern" in data:
            raise ValueError("image_pattern and image_channels: set one, not both (image_channels lists one file per channel)")
        return data

    @model_validator(mode="after")
    def _check_task_fields(self) -> CompetitionConfig:
        try:
            self.image_pattern.format(id="x")
        except (KeyError, IndexError, ValueError):
            # (no f-string: its doubled-brace escapes would look like leftover template syntax in the generated repo)
            raise ValueError("image_pattern: '" + self.image_pattern + "' may use only {id}, e.g. '{id}.png'") from None
        if self.image_channels is not None:
            if not self.image_channels:
                raise ValueError("image_channels: list at least one file pattern, e.g. ['{id}_red.png', '{id}_green.png']")
            for i, pattern in enumerate(self.image_channels):
                try:
                    ok = pattern.format(id="x") != pattern.format(id="y")
                except (KeyError, IndexError, ValueError):
                    ok = False
                if not ok:
                    raise ValueError("image_channels[" + str(i) + "]: '" + pattern + "' must contain {id} and no other braces, e.g. '{id}_red.png'")
            if len(set(self.image_channels)) != len(self.image_channels):
                repeated = next(p for p in self.image_channels if self.image_channels.count(p) > 1)
                raise ValueError(f"image_channels: {repeated!r} is listed twice")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            repeated = next(c for c in self.classes if self.classes.count(c) > 1)
            raise ValueError(f"classes: {repeated!r} is listed twice")
        if self.task == "multiclass" and isinstance(self.target, list):
            raise ValueError("target: a multiclass competition has one target column, not a list")
        fmt = self.submission.format
        allowed = {"multiclass": ("label", "probabilities"), "multilabel": ("labels", "binary_columns")}[self.task]
        if fmt is not None and fmt not in allowed:
            raise ValueError(f"submission.format: '{fmt}' is not for a {self.task} task; use one of {allowed}")
        return self

    @property
    def submission_format(self) -> str:
        if self.submission.format:
            return self.submission.format
        if self.task == "multiclass":
            return "label"
        return "binary_columns" if isinstance(self.target, list) else "labels"


# ----------------------------------------------------------------------------------------------------------
# Experiments: defaults here, differences in the experiment file


class ModelSpec(_Strict):
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


class DataSpec(_Strict):
    image_size: int = Field(224, gt=0)  # pixels, square
    batch_size: int = Field(32, gt=0)
    # DataLoader worker processes; auto: on CUDA the cores per process less one (at most 8), on the CPU 0
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    cache_images: bool = False  # decode every image once into memory (small data sets)
    mean: list[float] | None = None  # per channel, in [0, 1]; default: the model's ImageNet statistics
    std: list[float] | None = None


class AugmentSpec(_Strict):
    # albumentations transforms by class name with their arguments (crop sizes follow the stage: data.build_transform), e.g.
    #   - {name: Affine, p: 0.5, rotate: [-10, 10]}
    train: list[dict[str, Any]] = []


SCHEDULES = ("plateau", "constant", "cyclic", "cosine", "cosine_restarts", "onecycle", "step")


class ScheduleSpec(_Strict):
    """An LR schedule, built from torch.optim.lr_scheduler (solver/schedules.py)."""

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


class StageSpec(_Strict):
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


class TrainSpec(_Strict):
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


class TtaSpec(_Strict):
    """Test-time augmentation for `make predict TTA=N` (solver/tta.py)."""

    views: int = Field(8, ge=1, le=1024)  # views per image, the plain one included
    combine: Literal["probabilities", "logits", "geometric"] = "probabilities"
    augment: list[dict[str, Any]] | None = None  # albumentations transforms as in augment.train; default: augment.train
    include_plain: bool = True  # the first view is the un-augmented image
    seed: int = 0


class KnnSpec(_Strict):
    """kNN features from the experiment's embeddings for `make knn` (solver/knn.py)."""

    k: int = Field(10, ge=1)
    space: Literal["cosinesimil", "l2"] = "cosinesimil"
    M: int = Field(16, ge=2)  # HNSW graph degree
    ef_construction: int = Field(200, ge=1)
    ef_search: int = Field(100, ge=1)
    exact_below: int = Field(100_000, ge=0)  # smaller indexes are searched exactly (numpy), which is faster there
    features: list[Literal["label_distribution", "class_distance", "topk_distance"]] = ["label_distribution", "class_distance", "topk_distance"]


class PseudoSpec(_Strict):
    """Fold-safe pseudo-labels for `make pseudo` (solver/pseudo.py): fold k retrains with the test rows its own model labelled."""

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


class TrackSpec(_Strict):
    """Experiment tracking beside TensorBoard (solver/tracking.py)."""

    mlflow: bool = False  # log params (the resolved config), per-epoch metrics and the score to MLflow
    uri: str | None = None  # an MLflow tracking server (http://host:5000) or store; default: a file store in runs/<comp>/mlruns
    experiment: str | None = None  # the MLflow experiment; default: the competition's name


class TuneParam(_Strict):
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
    def _check_range(self) -> TuneParam:
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


class TuneSpec(_Strict):
    """`make tune`: an Optuna search over dotted config keys (solver/tune.py)."""

    params: dict[str, TuneParam] = {}  # e.g. {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}, model.name: {choices: [...]}}
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


class ExperimentConfig(_Strict):
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


# ----------------------------------------------------------------------------------------------------------
# Level 2: ensembles and stacks of sources (experiments, their TTA and kNN, other ensembles)


class EnsembleConfig(_Strict):
    """<competition>/ensembles/<name>.yaml"""

    inputs: list[str] = Field(min_length=2)  # sources under runs/<comp>/, e.g. exp001, exp001/tta8, exp002
    method: Literal["mean", "caruana", "rank"] = "mean"  # caruana: greedy forward selection on OOF; rank: for AUC-like metrics
    iterations: int = Field(50, ge=1)  # caruana rounds


class LgbmSpec(_Strict):
    num_boost_round: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    min_data_in_leaf: int | None = Field(None, ge=1)  # None: max(20, 1% of the training rows)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    inner_folds: int = Field(3, ge=2)  # lightgbm.cv inside each outer fold picks the number of rounds
    seed: int = 42
    num_threads: int = Field(1, ge=1)  # level-2 matrices are small: more threads mostly contend (measured 10x slower with 2 on a loaded 2-core box)
    # auto: per outer fold, the lowest inner-CV log loss of logistic blends of the inputs' logits (one per C in
    # logistic_c, with and without the kNN block) and LightGBM; logistic / lgbm: only those candidates
    model: Literal["auto", "logistic", "lgbm"] = "auto"
    logistic_c: list[float] = Field([0.01, 0.1, 1.0], min_length=1)
    refit: bool = False  # LightGBM: refit per fold for the chosen rounds instead of averaging the inner cv boosters
    extra_params: dict[str, Any] = {}


class StackConfig(_Strict):
    """<competition>/stacks/<name>.yaml: LightGBM over OOF predictions, kNN features and metadata, same folds."""

    inputs: list[str] = Field(min_length=1)  # sources whose OOF / test probabilities are features
    knn: list[str] = []  # experiments whose kNN features (make knn) are added
    metadata: list[str] = []  # columns of train.csv and test.csv added as numeric features
    lgbm: LgbmSpec = LgbmSpec()


# Which keys of AdaptConfig each method reads; any other set key is an error (it would be silently ignored).
ADAPT_KEYS = {
    "prior_shift": {"priors", "calibrate"},
    "head_tuning": {"confidence", "labelled_subset", "init", "epochs", "lr", "weight_decay", "target_weight", "include_train"},
    "thresholds": {"metric", "expected_frequencies", "at_least_one"},
}


class AdaptConfig(_Strict):
    """<competition>/adapt/<name>.yaml: adapt a source's predictions to the test distribution (solver/adapt.py)."""

    source: str  # a source under runs/<comp>/ (head_tuning: an experiment, whose fold checkpoints give the embeddings)
    method: Literal["prior_shift", "head_tuning", "thresholds"]
    # prior_shift: "estimate" (EM on the test posteriors), or the test priors as a list in class order or {class: p}
    priors: Literal["estimate"] | list[float] | dict[str, float] = "estimate"
    calibrate: Literal["temperature", "none"] = "temperature"  # temperature scaling of each fold model (fitted on its OOF) before EM
    # head_tuning: the target set is test rows predicted with at least `confidence` (pseudo-labels) and/or labelled_subset,
    # a CSV (path from the repo root) with the id column and, for test rows, the target column
    confidence: float | None = Field(None, gt=0, le=1)
    labelled_subset: str | None = None
    init: Literal["model", "fresh"] = "model"  # start from the fold model's classifier, or a new linear layer
    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    target_weight: float = Field(1.0, gt=0)  # loss weight of a target row (a training row weighs 1)
    include_train: bool = True  # also train on the fold's own training rows
    # thresholds (multilabel): the metric maximised on OOF ("competition": the competition's), the test's expected
    # label frequencies (null: none, "train", "estimate": EM per label, a list in class order or {label: f}), and
    # whether every row gets at least its most likely label
    metric: str = "macro_f1"
    expected_frequencies: Literal["train", "estimate"] | list[float] | dict[str, float] | None = None
    at_least_one: bool = False

    @model_validator(mode="before")
    @classmethod
    def _class_keys_as_text(cls, data: Any) -> Any:
        # YAML reads {0: 0.1, 1: 0.2} with integer keys; class names are compared as text.
        if isinstance(data, dict):
            keyed = [k for k in ("priors", "expected_frequencies") if isinstance(data.get(k), dict)]
            data = {**data, **{k: {str(c): p for c, p in data[k].items()} for k in keyed}}
        return data

    @model_validator(mode="after")
    def _keys_of_method(self) -> AdaptConfig:
        foreign = sorted(k for k in self.model_fields_set - {"source", "method"} if k not in ADAPT_KEYS[self.method])
        if foreign:
            owner = next(m for m, keys in ADAPT_KEYS.items() if foreign[0] in keys)
            raise ValueError(f"'{foreign[0]}' is an option of method {owner}, not of {self.method}; remove it")
        if self.method == "head_tuning" and self.confidence is None and self.labelled_subset is None:
            raise ValueError("head_tuning needs a target set: set confidence (pseudo-labels of test rows) and/or labelled_subset")
        return self


# ----------------------------------------------------------------------------------------------------------
# Loading


def read_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SolverError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SolverError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SolverError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys of the (nested) config section at loc, for a did-you-mean hint."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    problems = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}' ({did_you_mean(str(e['loc'][-1]), _fields_at(model, e['loc']))})")
        elif e["type"] == "missing":
            problems.append(f"missing required key '{key}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"key '{key}': {msg} (got {e['input']!r})")
    return f"{source}: " + "; ".join(problems)


def validate(model: type[BaseModel], data: dict[str, Any], source: str):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SolverError(format_validation_error(err, model, source)) from None


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """['train.lr=1e-3', 'model.name=resnet34'] -> {'train': {'lr': 0.001}, 'model': {'name': 'resnet34'}}."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SolverError(f"override '{item}': expected key=value, e.g. train.lr=1e-3")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _check_flow_keys(item, value)
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _check_flow_keys(item: str, value: Any) -> None:
    """YAML reads {foo:1} (no space after the colon) as the key 'foo:1' without a value, which timm then drops."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if inner is None and isinstance(key, str) and ":" in key:
                name, _, given = key.partition(":")
                fix = "{" + f"{name}: {given}" + "}"  # (no doubled braces: they would read as template syntax in the generated repo)
                raise SolverError(f"override '{item}': {key!r} is read as a key without a value; write {fix}, with a space after the colon")
            _check_flow_keys(item, inner)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_competition_config(path: Path) -> CompetitionConfig:
    return validate(CompetitionConfig, read_yaml(path), str(path))


def load_experiment_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    data = read_yaml(path)
    source = str(path)
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        source = f"{path} with overrides {' '.join(overrides)}"
    return validate(ExperimentConfig, data, source)
