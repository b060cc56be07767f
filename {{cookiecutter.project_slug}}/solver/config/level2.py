"""Level-2 files: <competition>/ensembles/<name>.yaml and <competition>/stacks/<name>.yaml."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from solver.config.loader import Strict

# ----------------------------------------------------------------------------------------------------------
# Level 2: ensembles and stacks of sources (experiments, their TTA and kNN, other ensembles)


class EnsembleConfig(Strict):
    """<competition>/ensembles/<name>.yaml"""

    inputs: list[str] = Field(min_length=2)  # sources under runs/<comp>/, e.g. exp001, exp001/tta8, exp002
    method: Literal["mean", "caruana", "rank"] = "mean"  # caruana: greedy forward selection on OOF; rank: for AUC-like metrics
    iterations: int = Field(50, ge=1)  # caruana rounds


class LgbmSpec(Strict):
    """The level-2 models of a stack (solver/level2/stack.py): LightGBM and the logistic blends it is compared with."""

    num_boost_round: int = Field(2000, ge=1)  # upper bound; the inner CV's early stopping picks the count per fold
    early_stopping_rounds: int = Field(50, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)  # few, shallow trees: stack inputs are few and already strong
    min_data_in_leaf: int | None = Field(None, ge=1)  # None: max(20, 1% of the training rows), fewer splits the fewer rows there are
    feature_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    # lightgbm.cv inside each outer fold picks the number of rounds. 2, not 3: on USPS the same held-out scores at 0.58x
    # the time (1.42x instead of 2.41x the hand-written peer at one thread; benchmarks/BENCHMARKS.md, "Stack cost")
    inner_folds: int = Field(2, ge=2)
    seed: int = 42
    # None: this process's thread share (OMP_NUM_THREADS, set by JOBS=N) or else one per physical core. On the quiet 2-core
    # VM, 2 threads ran the peer 1.35x and stack_lgbm 1.15x faster than 1; on a loaded box give 1 (threads beyond the free cores contend)
    num_threads: int | None = Field(None, ge=1)
    # auto: per outer fold (and label), the lowest inner-CV log loss of logistic blends of the inputs' logits (one per C in
    # logistic_c, with and without the kNN block) and LightGBM; logistic / lgbm: only those candidates
    model: Literal["auto", "logistic", "lgbm"] = "auto"
    logistic_c: list[float] = Field([0.01, 0.1, 1.0], min_length=1)  # inverse L2 strengths tried for the logistic blend
    refit: bool = False  # LightGBM: refit per fold for the chosen rounds instead of averaging the inner cv boosters
    extra_params: dict[str, Any] = {}  # merged last into the LightGBM params


class StackConfig(Strict):
    """<competition>/stacks/<name>.yaml: LightGBM over OOF predictions, kNN features and metadata, same folds."""

    inputs: list[str] = Field(min_length=1)  # sources whose OOF / test probabilities are features
    knn: list[str] = []  # experiments whose kNN features (make knn) are added
    metadata: list[str] = []  # columns of train.csv and test.csv added as numeric features
    lgbm: LgbmSpec = LgbmSpec()
