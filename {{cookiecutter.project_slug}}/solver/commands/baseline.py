"""The whole pipeline within a time budget: probe, folds, TTA, kNN, stack, a validated submission of the best CV.

make baseline COMP=c MINUTES=30 [EXP=..]

1. the experiment: EXP, else exp001 (written sized to the data, as make experiment does, when it is absent or still
   the scaffold's generic file);
2. a throughput probe of its model on this machine (solver/train/budget.py), then its curriculum compressed to fit:
   every stage scaled by one factor, the clean fine-tune kept; trained on every fold into runs/<c>/<exp>_<M>min/;
3. with the time left, in this order and each only when its estimate fits: TTA=auto (written only when it beats the
   plain CV), kNN features, a stack over them (<c>/stacks/<exp>_<M>min.yaml);
4. the leaderboard, and a validated submission of the best CV source of this run.

Progress lines give the minutes spent, left and the estimated finish. The plan is kept in the run folder
(budget.json): a killed baseline started again with the same MINUTES resumes its folds; FRESH=1 plans and trains anew.

python -m solver baseline --comp c --minutes 30 [--exp exp001] [--fresh]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from solver.base.atomic import write_json
from solver.base.cli import make_parser
from solver.base.errors import SolverError
from solver.commands.experiment import write_sized_experiment
from solver.competition.check_data import check_before_training
from solver.competition.contract import Competition
from solver.competition.folds import load_folds
from solver.competition.scaffold import is_generic_experiment
from solver.level2.knn_stage import knn_stage
from solver.level2.stages import stack_stage
from solver.nn.runtime import resolve_device
from solver.predict.run import predict_experiment
from solver.predict.tta_auto import candidate_views
from solver.runs.leaderboard import write_leaderboard
from solver.submit.submission import make_submission, record_submission
from solver.train.budget import Probe, compressed_overrides, fit_epochs, probe, recipe_epochs
from solver.train.experiment import load_experiment
from solver.train.loop import epoch_callback
from solver.train.run import train_experiment

SUBMIT_SECONDS = 15  # the leaderboard and the submission
STACK_SECONDS = 30  # a stack's inner CV over a few sources: seconds next to training
LEVEL2_SHARE = 0.2  # of the budget, at most, kept from training for TTA, kNN and the stack


def process_age() -> float:
    """Seconds since this process started (Linux: /proc), so the budget counts the imports too; elsewhere 0."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


class Clock:
    """The budget's clock, started when the process did: minutes spent and left, for every progress line."""

    def __init__(self, minutes: float):
        self.start, self.budget = time.perf_counter() - process_age(), minutes * 60

    @property
    def spent(self) -> float:
        return time.perf_counter() - self.start

    @property
    def left(self) -> float:
        return self.budget - self.spent

    def say(self, what: str, finish: float | None = None) -> None:
        eta = f", estimated finish at {finish / 60:.1f}" if finish is not None else ""
        tqdm.write(f"baseline: {what} ({self.spent / 60:.1f} of {self.budget / 60:.1f} minutes spent, {self.left / 60:.1f} left{eta})")


def choose_experiment(comp: Competition, exp_name: str | None) -> str:
    if exp_name:
        comp.experiment_path(exp_name)  # an unknown name is one line listing the experiments
        return exp_name
    first = comp.folder / "configs" / "exp001.yaml"
    if first.is_file() and not is_generic_experiment(comp.name, first.read_text()):
        return "exp001"
    name = write_sized_experiment(comp, "exp001", force=True)
    print(f"wrote {comp.folder / 'configs' / f'{name}.yaml'} sized to the data (make experiment)")
    return name


def plan_training(comp: Competition, exp_name: str, run: str, minutes: float, clock: Clock, fresh: bool) -> dict:
    """The plan (its overrides fit the recipe into the budget): the run's kept plan, or a new one from a probe."""
    plan_path = comp.runs_dir / run / "budget.json"
    if plan_path.is_file() and not fresh:
        plan = json.loads(plan_path.read_text())
        print(f"baseline: resuming the plan in {plan_path} (epochs per stage {plan['epochs']}); FRESH=1 plans anew")
        return plan
    exp = load_experiment(comp.root, comp.name, exp_name, run_name=run, training=True)
    measured = probe(exp, resolve_device(exp.cfg.train.device))
    recipe = recipe_epochs(exp)
    estimates = post_stage_seconds(exp, measured)
    # Training comes first: the level-2 stages (TTA, kNN, stack) are kept at most a fifth of the budget, and run after
    # the folds only when their estimate fits what is left. A submission always gets its seconds, and 3% is slack.
    level2 = min(sum(estimates.values()), LEVEL2_SHARE * clock.budget)
    reserve = SUBMIT_SECONDS + 0.03 * clock.budget
    epochs = fit_epochs(recipe, measured, clock.left - reserve - level2, exp.n_folds)
    if epochs is None:  # no time for level 2: training alone
        level2 = 0.0
        epochs = fit_epochs(recipe, measured, clock.left - reserve, exp.n_folds)
    if epochs is None:
        needed = (clock.spent + reserve + exp.n_folds * measured.fold_seconds([1] * len(recipe))) / 60
        raise SolverError(
            f"a budget of {minutes:g} minutes is too small for {exp_name}: one epoch per stage ({len(recipe)} stages) of {exp.n_folds} folds "
            f"needs about {needed:.1f} minutes on this machine (probe: {measured.epoch_seconds(0):.1f} s an epoch); "
            f"give MINUTES={max(1, round(needed + 0.5))} or more, or a smaller data.image_size / model in {comp.experiment_path(exp_name)}"
        )
    plan = {
        "minutes": minutes,
        "experiment": exp_name,
        "recipe_epochs": recipe,
        "epochs": epochs,
        "overrides": compressed_overrides(exp, epochs),
        "probe": measured.to_json(),
        "planned_fold_seconds": measured.fold_seconds(epochs),
        "planned_level2_seconds": level2,
        "post_estimates": estimates,
    }
    (comp.runs_dir / run).mkdir(parents=True, exist_ok=True)
    write_json(plan, plan_path)
    scale = "the recipe as written" if epochs == recipe else f"compressed from {recipe} epochs per stage"
    finish = clock.spent + exp.n_folds * plan["planned_fold_seconds"] + level2 + SUBMIT_SECONDS
    clock.say(
        f"probe took {measured.seconds:.0f} s; {exp.n_folds} folds of {epochs} epochs per stage ({scale}), "
        f"about {plan['planned_fold_seconds'] / 60:.1f} minutes each",
        finish,
    )
    return plan


def post_stage_seconds(exp, measured: Probe) -> dict[str, float]:
    """Estimates from the probe: TTA=auto runs each candidate view over every OOF row and every fold's test rows; kNN
    embeds the same rows once; the stack is a few seconds of logistic regressions and LightGBM."""
    images = len(exp.y) + exp.n_folds * len(exp.test_df)
    return {
        "tta": measured.inference_seconds(images * len(candidate_views(exp.cfg.augment.train))) + exp.n_folds * measured.fold_setup,
        "knn": measured.inference_seconds(images) + exp.n_folds * measured.fold_setup,
        "stack": STACK_SECONDS,
    }


def train_within(comp: Competition, exp_name: str, run: str, plan: dict, clock: Clock, fresh: bool) -> None:
    """Train every fold; after each, a progress line with the finish estimated from the folds' actual pace."""
    n_folds, planned = comp.cfg.n_folds, plan["planned_fold_seconds"]
    total_epochs, started, finished = sum(plan["epochs"]), clock.spent, set()
    post = plan["planned_level2_seconds"] + SUBMIT_SECONDS

    def after_epoch(fold: int | None, row: dict) -> None:
        if row["epoch"] == total_epochs and fold is not None and fold not in finished:
            finished.add(fold)
            pace = (clock.spent - started) / len(finished)  # seconds a fold, as measured so far
            finish = clock.spent + pace * (n_folds - len(finished)) + post
            clock.say(f"fold {fold} trained in {pace / 60:.1f} minutes on average (planned {planned / 60:.1f})", finish)

    with epoch_callback(after_epoch):
        score = train_experiment(comp.root, comp.name, exp_name, overrides=plan["overrides"], fresh=fresh, run_name=run)
    if score is None:
        raise SolverError(f"{run}: the folds did not join; see the lines above")


def level2_within(comp: Competition, exp_name: str, run: str, plan: dict, clock: Clock) -> list[str]:
    """TTA, kNN and the stack, each only when its estimate fits the time left; the sources this run wrote."""
    sources, post, overrides = [run], plan["post_estimates"], plan["overrides"]
    knn_and_stack = post["knn"] + post["stack"]
    if post["tta"] + knn_and_stack + SUBMIT_SECONDS < clock.left:
        clock.say(f"TTA=auto, about {post['tta'] / 60:.1f} minutes")
        if predict_experiment(comp.root, comp.name, exp_name, overrides, run_name=run, tta="auto") is not None:
            sources.append(f"{run}/tta_auto")
    else:
        clock.say(f"no time for TTA=auto (about {post['tta'] / 60:.1f} minutes)")
    if knn_and_stack + SUBMIT_SECONDS < clock.left:
        clock.say(f"kNN features and a stack, about {knn_and_stack / 60:.1f} minutes")
        knn_stage(comp.root, comp.name, exp_name, overrides, run_name=run)
        sources.append(f"{run}/knn")
        stack = f"{run}_stack"
        stack_file = comp.folder / "stacks" / f"{stack}.yaml"
        stack_file.parent.mkdir(parents=True, exist_ok=True)
        stack_file.write_text(
            f"# written by make baseline: a stack over {run}'s sources and kNN features; make stack COMP={comp.name} STACK={stack} refits it\n"
            f"inputs: [{', '.join(s for s in sources if not s.endswith('/knn'))}]\nknn: [{run}]\n"
        )
        stack_stage(comp.root, comp.name, stack)
        sources.append(stack)
    else:
        clock.say(f"no time for kNN and a stack (about {knn_and_stack / 60:.1f} minutes)")
    return sources


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, "baseline", exp=False)
    parser.add_argument("--minutes", required=True, help="the time budget, everything included")
    parser.add_argument("--exp", help="the experiment (default: exp001, sized to the data when it is absent or the generic one)")
    parser.add_argument("--fresh", action="store_true", help="probe, plan and train anew (the run's earlier folds are replaced)")
    args = parser.parse_args(argv)
    try:
        minutes = float(args.minutes)
    except ValueError:
        minutes = 0.0
    if not minutes > 0:
        raise SolverError(f"MINUTES={args.minutes or '(empty)'}: give the time budget in minutes, e.g. make baseline COMP={args.comp} MINUTES=30")
    clock = Clock(minutes)
    comp = Competition.load(args.root, args.comp)
    check_before_training(comp)
    load_folds(comp)
    exp_name = choose_experiment(comp, args.exp)
    run = f"{exp_name}_{minutes:g}min"
    plan = plan_training(comp, exp_name, run, minutes, clock, args.fresh)
    train_within(comp, exp_name, run, plan, clock, args.fresh)
    sources = level2_within(comp, exp_name, run, plan, clock)
    board, text = write_leaderboard(comp)
    ours = board[board["source"].isin(sources) & ~board["stale"].astype(bool)].copy()
    # the best CV, never the held-out answers; a tie goes to the simpler source (the folds before TTA, kNN, the stack)
    ours["order"] = ours["source"].map(sources.index)
    best = ours.sort_values(["cv", "order"], ascending=[not comp.metric.greater_is_better, True]).iloc[0]
    path = make_submission(comp, comp.runs_dir / best["source"])
    record_submission(comp, best["source"], path)
    print(text)
    spent = clock.spent
    holdout = f", held-out {best['metric']} {best['holdout']:.4f}" if pd.notna(best["holdout"]) else ""
    report = {**plan, "spent_seconds": spent, "budget_seconds": clock.budget, "overrun": spent / clock.budget - 1, "submitted": best["source"]}
    write_json(report, comp.runs_dir / run / "budget.json")
    print(
        f"baseline: submission of {best['source']} (best CV of this run: {best['metric']} {best['cv']:.4f}{holdout}) validated, {path}; "
        f"{spent / 60:.1f} of {minutes:g} minutes ({spent / clock.budget - 1:+.1%})"
    )
