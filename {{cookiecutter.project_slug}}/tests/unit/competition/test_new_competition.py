import shutil
import subprocess

import pytest
import yaml

from solver.base.errors import SolverError
from solver.competition.check_data import check_data
from solver.competition.contract import Competition
from solver.competition.scaffold import RESERVED, new_competition
from solver.config.competition import load_competition_config
from solver.config.experiment import load_experiment_config
from solver.train.experiment import load_experiment
from solver.train.run import train_fold
from tests.conftest import solver_command
from tests.synthetic import make_competition

# (pretrained off: tests never reach the network; tests/unit/nn/test_pretrained.py trains from a hub cache it writes)
TINY = ["model.name=test_resnet", "model.pretrained=false", "data.image_size=32", "data.batch_size=8", "data.num_workers=0", "train.epochs=1"]


def new(repo, root, *args) -> subprocess.CompletedProcess:
    return subprocess.run(solver_command("new-competition", "--root", str(root), *args), capture_output=True, text=True)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_new_competition_is_a_valid_contract_for_its_task(repo, tmp_path, task):
    result = new(repo, tmp_path, "--name", "protein_atlas", "--task", task, "--kaggle-slug", "human-protein-atlas")
    assert result.returncode == 0, result.stderr
    assert "make check-data COMP=protein_atlas" in result.stdout
    folder = tmp_path / "protein_atlas"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == ["competition.yaml", "configs/exp001.yaml"]
    text = (folder / "competition.yaml").read_text()
    assert f"task: {task}\n" in text and "# classes:" in text  # the comments that tell what to fill in stay
    cfg = load_competition_config(folder / "competition.yaml")
    assert (cfg.name, cfg.task, cfg.kaggle_slug) == ("protein_atlas", task, "human-protein-atlas")
    assert cfg.submission_format == ("label" if task == "multiclass" else "labels")
    load_experiment_config(folder / "configs/exp001.yaml")
    assert not list(tmp_path.glob(".*partial"))


def test_without_a_slug_the_key_is_a_comment(tmp_path):
    new_competition(tmp_path, "comp", "multiclass")
    assert "# kaggle_slug:" in (tmp_path / "comp/competition.yaml").read_text()
    assert load_competition_config(tmp_path / "comp/competition.yaml").kaggle_slug is None


@pytest.mark.parametrize(
    "name, message",
    [
        ("my-comp", "lowercase Python identifier"),
        ("1st", "lowercase Python identifier"),
        ("Protein", "lowercase Python identifier"),
        ("class", "lowercase Python identifier"),
        ("", "no competition name"),
        *[(name, "clashes with the repository's own folder") for name in sorted(RESERVED)],
    ],
)
def test_a_bad_name_is_refused_and_nothing_is_written(tmp_path, name, message):
    with pytest.raises(SolverError, match=message):
        new_competition(tmp_path, name, "multiclass")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_competition_is_never_overwritten(repo, tmp_path):
    new_competition(tmp_path, "comp", "multiclass")
    contract = tmp_path / "comp/competition.yaml"
    contract.write_text(contract.read_text().replace("metric: accuracy", "metric: log_loss"))  # the user's edits
    (tmp_path / "comp/configs/exp002.yaml").write_text("model: {name: resnet34}\n")
    before = {p: p.read_bytes() for p in (tmp_path / "comp").rglob("*") if p.is_file()}
    result = new(repo, tmp_path, "--name", "comp", "--task", "multilabel")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "already exists; nothing was changed" in result.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "comp").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comp"]
    bad = new(repo, tmp_path, "--name", "my-comp")
    assert bad.returncode == 2 and "competition name 'my-comp' is invalid" in bad.stderr and "Traceback" not in bad.stderr


def test_new_competition_with_data_in_its_layout_checks_loads_and_trains(tmp_path):
    # Kaggle-like files in the layout the new contract declares (id, Target, train/<id>.png, ...), then its own folder.
    make_competition(tmp_path, name="hpa", task="multilabel", n_train=20, n_test=4)
    shutil.rmtree(tmp_path / "hpa")
    new_competition(tmp_path, "hpa", "multilabel")
    comp = Competition.load(tmp_path, "hpa")
    report = check_data(comp)
    assert report.problems == [] and "train: 20 rows" in report.summary
    exp = load_experiment(tmp_path, "hpa", "exp001", TINY)
    assert exp.comp.classes == ["0", "1", "2", "3"] and comp.cfg.n_folds == 5
    train_fold(exp, 0)
    assert (tmp_path / "runs/hpa/exp001/fold0/best.pt").is_file()
    resolved = yaml.safe_load((tmp_path / "runs/hpa/exp001/fold0/config.yaml").read_text())
    assert resolved["competition"] == "hpa" and resolved["classes"] == ["0", "1", "2", "3"]


def test_exp001_fine_tunes_pretrained_weights_by_default_and_learns_from_scratch_on_request(repo, tmp_path):
    new_competition(tmp_path, "photos", "multiclass")
    fine_tune = load_experiment_config(tmp_path / "photos/configs/exp001.yaml")
    assert (fine_tune.model.name, fine_tune.model.pretrained) == ("resnet18.a1_in1k", True)
    assert (fine_tune.train.optimizer, fine_tune.train.lr, fine_tune.train.schedule.name) == ("adam", 1e-4, "plateau")
    assert fine_tune.train.stages is None

    result = new(repo, tmp_path, "--name", "scratch", "--from-scratch")
    assert result.returncode == 0, result.stderr
    assert "(multiclass, from scratch)" in result.stdout
    scratch = load_experiment_config(tmp_path / "scratch/configs/exp001.yaml")
    assert scratch.model.pretrained is False and scratch.model.weights is None
    assert scratch.train.optimizer == "adamw" and scratch.train.lr >= 1e-3 and scratch.train.schedule.warmup_epochs > 0
    stages = scratch.train.resolved_stages(scratch.data.image_size)
    assert len(stages) == 3 and stages[0].image_size < stages[1].image_size == scratch.data.image_size  # small images first
    assert stages[1].mixup_alpha > 0 and stages[-1].aug_p == 0 and stages[-1].lr < scratch.train.lr  # ends on clean images, low LR
    assert scratch.train.epochs == sum(s.epochs for s in stages)


def test_the_from_scratch_exp001_loads_with_data_in_its_layout(tmp_path):
    make_competition(tmp_path, name="photos", n_train=20, n_test=4)
    shutil.rmtree(tmp_path / "photos")
    new_competition(tmp_path, "photos", "multiclass", pretrained=False)
    exp = load_experiment(tmp_path, "photos", "exp001", ["model.name=test_resnet"])  # its schedules and stages pass the load-time checks
    assert exp.cfg.train.stages is not None and exp.cfg.model.pretrained is False
