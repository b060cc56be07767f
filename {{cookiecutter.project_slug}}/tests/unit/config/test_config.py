from pathlib import Path

import pytest
import yaml

from solver.base.errors import SolverError
from solver.competition.contract import Competition, list_competitions
from solver.config.competition import load_competition_config
from solver.config.experiment import ExperimentConfig, load_experiment_config
from solver.config.loader import parse_overrides


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_adam_1e4_with_plateau():
    cfg = ExperimentConfig()
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.schedule.name) == ("adam", 1e-4, "plateau")


def test_experiment_holds_only_differences(tmp_path):
    cfg = load_experiment_config(write(tmp_path / "e.yaml", {"train": {"lr": 3e-3}}))
    assert cfg.train.lr == 3e-3 and cfg.train.epochs == ExperimentConfig().train.epochs


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    path = write(tmp_path / "exp.yaml", {"train": {"lrr": 1e-3}})
    with pytest.raises(SolverError) as err:
        load_experiment_config(path)
    message = str(err.value)
    assert "unknown key 'train.lrr'" in message and str(path) in message and "'lr'" in message


def test_wrong_type_names_key_and_file(tmp_path):
    path = write(tmp_path / "exp.yaml", {"data": {"batch_size": "big"}})
    with pytest.raises(SolverError, match=r"exp\.yaml: key 'data\.batch_size'"):
        load_experiment_config(path)


def test_invalid_value_is_rejected(tmp_path):
    with pytest.raises(SolverError, match="key 'data.image_size'"):
        load_experiment_config(write(tmp_path / "exp.yaml", {"data": {"image_size": 0}}))
    with pytest.raises(SolverError, match="key 'train.optimizer'"):
        load_experiment_config(write(tmp_path / "exp.yaml", {"train": {"optimizer": "adamm"}}))


def test_overrides_apply_and_unknown_override_fails(tmp_path):
    path = write(tmp_path / "exp.yaml", {})
    cfg = load_experiment_config(path, ["train.lr=1e-3", "model.name=resnet34", "train.folds=[0, 2]"])
    assert (cfg.train.lr, cfg.model.name, cfg.train.folds) == (1e-3, "resnet34", [0, 2])
    with pytest.raises(SolverError, match=r"with overrides train\.epoch=3: unknown key 'train\.epoch'"):
        load_experiment_config(path, ["train.epoch=3"])
    with pytest.raises(SolverError, match="expected key=value"):
        parse_overrides(["train.lr"])


def test_competition_contract_requires_target_and_checks_task(tmp_path):
    path = write(tmp_path / "competition.yaml", {"name": "x", "task": "multiclass"})
    with pytest.raises(SolverError, match=r"competition\.yaml: missing required key 'target'"):
        load_competition_config(path)
    write(path, {"name": "x", "task": "multiclass", "target": ["a", "b"]})
    with pytest.raises(SolverError, match="one target column"):
        load_competition_config(path)
    write(path, {"name": "x", "task": "multilabel", "target": "t", "submission": {"format": "label"}})
    with pytest.raises(SolverError, match="submission.format"):
        load_competition_config(path)


def test_every_competition_and_experiment_in_this_repo_is_valid(repo):
    names = list_competitions(repo)
    assert names, "the repository has no competition folder"
    for name in names:
        comp = Competition.load(repo, name)
        for exp in sorted((comp.folder / "configs").glob("*.yaml")):
            load_experiment_config(exp)


def test_a_key_added_by_a_newer_solver_at_its_default_keeps_old_folds_valid():
    from solver.runs.compatibility import config_difference

    old = {"config": {"train": {"lr": 0.001}, "data": {"batch_size": 16}}, "classes": ["a"], "folds_hash": "x", "in_chans": 3}
    at_default = {**old, "config": {"train": {"lr": 0.001, "sync_bn": False}, "data": {"batch_size": 16}}}
    changed = {**old, "config": {"train": {"lr": 0.001, "sync_bn": True}, "data": {"batch_size": 16}}}
    assert config_difference(at_default, old) is None
    assert config_difference(changed, old) == "train.sync_bn True (now) vs None (there)"
    # An unknown key is never waved through, whatever its value.
    assert config_difference({**old, "config": {**old["config"], "extra": False}}, old) is not None
