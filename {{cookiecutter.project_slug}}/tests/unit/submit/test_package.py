"""`make package`: a folder that predicts offline from itself alone, equal to what `make submit` writes."""

import json
import os
import runpy
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from solver.base.errors import SolverError
from solver.competition.contract import Competition
from solver.predict.run import predict_experiment
from solver.submit.package import build_package, kaggle_slug, predict_package
from solver.submit.submission import make_submission
from solver.train.run import train_experiment
from tests.synthetic import make_competition


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny synthetic competition with a finished experiment 'tiny' (2 folds) and its TTA-2."""
    root = tmp_path_factory.mktemp("package")
    make_competition(root)
    train_experiment(root, "synth", "tiny")
    predict_experiment(root, "synth", "tiny", tta=2)
    return root


def isolated_python(folder: Path) -> Path:
    """A venv whose python sees this interpreter's third-party libraries (torch, timm, ...) but not this repository:
    one .pth line adds the site-packages folder, and .pth files inside it (an editable install) are not processed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    python = folder / "bin" / "python"
    own_site = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True)
    (Path(own_site.stdout.strip()) / "parent_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_offline_package_predicts_what_make_submit_writes(trained, tmp_path, monkeypatch, capsys):
    comp = Competition.load(trained, "synth")
    run = trained / "runs/synth/tiny"
    assert (run / "confusion_matrix.png").is_file() and (run / "learning_curves.png").is_file()  # the run's reports
    expected = pd.read_csv(make_submission(comp, run, tmp_path / "expected.csv"), dtype=str)

    # `python -m solver package` as `make package COMP=synth SOURCE=tiny KAGGLE_USER=someone` runs it (in this process: no second torch import)
    monkeypatch.setattr(sys, "argv", ["solver", "package", "--root", str(trained), "--comp", "synth", "--source", "tiny", "--user", "someone"])
    runpy.run_module("solver", run_name="__main__")
    package = trained / "build/package/synth-tiny"
    assert f"packaged synth/tiny into {package}" in capsys.readouterr().out
    names = {str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()}
    assert {"infer.py", "infer.ipynb", "config.yaml", "package.json", "dataset-metadata.json", "synth/competition.yaml"} <= names
    assert {"models/fold0.pt", "models/fold1.pt", "solver/submit/package.py", "solver/train/loop.py"} <= names
    assert json.loads((package / "dataset-metadata.json").read_text())["id"] == "someone/synth-tiny"
    assert json.loads((package / "package.json").read_text())["cv"] == json.loads((run / "score.json").read_text())["cv"]

    python = isolated_python(tmp_path / "venv")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    assert (
        subprocess.run([str(python), "-I", "-c", "import solver"], cwd=cwd, capture_output=True, env=env).returncode != 0
    )  # the repo is out of reach
    data = trained / "data/synth"
    args = [
        str(python),
        "-I",
        str(package / "infer.py"),
        "--data",
        str(data),
        "--out",
        "sub.csv",
        "--probs",
        "probs.csv",
        "--device",
        "cpu",
        "--verbose",
    ]
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"solver: {package / 'solver' / '__init__.py'}" in result.stdout
    pd.testing.assert_frame_equal(pd.read_csv(cwd / "sub.csv", dtype=str), expected)
    probs, joined = pd.read_csv(cwd / "probs.csv"), pd.read_csv(run / "test.csv")
    assert probs["id"].tolist() == joined["id"].tolist()
    np.testing.assert_allclose(probs[comp.classes].to_numpy(), joined[comp.classes].to_numpy(), atol=1e-5)

    # The notebook's code cells, run as one script with the Kaggle paths pointed here.
    cells = json.loads((package / "infer.ipynb").read_text())["cells"]
    assert "/kaggle/input/synth-tiny" in "".join(cells[1]["source"])
    script = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    nb_env = {**env, "PACKAGE_DIR": str(package), "DATA_DIR": str(data), "SUBMISSION": str(cwd / "nb.csv")}
    result = subprocess.run([str(python), "-I", "-c", script], cwd=cwd, capture_output=True, text=True, env=nb_env)
    assert result.returncode == 0, result.stdout + result.stderr
    pd.testing.assert_frame_equal(pd.read_csv(cwd / "nb.csv", dtype=str), expected)


def test_tta_package_predicts_the_tta_source(trained, tmp_path):
    comp = Competition.load(trained, "synth")
    package = build_package(comp, "tiny/tta2", tmp_path / "pkg")
    assert json.loads((package / "package.json").read_text())["tta_views"] == 2
    out = predict_package(package, trained / "data/synth", tmp_path / "sub.csv", "cpu", tmp_path / "probs.csv")
    expected = pd.read_csv(make_submission(comp, trained / "runs/synth/tiny/tta2", tmp_path / "expected.csv"), dtype=str)
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype=str), expected)
    joined = pd.read_csv(trained / "runs/synth/tiny/tta2/test.csv")
    np.testing.assert_allclose(pd.read_csv(tmp_path / "probs.csv")[comp.classes].to_numpy(), joined[comp.classes].to_numpy(), atol=1e-5)


def test_missing_checkpoints_and_unsupported_sources_are_refused(trained, tmp_path):
    comp = Competition.load(trained, "synth")
    broken = trained / "runs/synth/broken"
    shutil.copytree(trained / "runs/synth/tiny", broken)
    (broken / "fold1/best.pt").unlink()
    with pytest.raises(SolverError, match=r"broken/fold1/best.pt not found: .*FOLD=1"):
        build_package(comp, "broken", tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists() and not list(tmp_path.iterdir())  # no package, no .partial folder
    with pytest.raises(SolverError, match="does not exist; experiments with checkpoints: .*tiny"):
        build_package(comp, "nothing", tmp_path / "pkg")
    shutil.copy(trained / "synth/configs/tiny.yaml", trained / "synth/configs/untrained.yaml")
    with pytest.raises(SolverError, match="train it first: make train COMP=synth EXP=untrained"):
        build_package(comp, "untrained", tmp_path / "pkg")
    (trained / "runs/synth/ens001").mkdir()
    (trained / "runs/synth/ens001/score.json").write_text('{"kind": "ensemble"}')
    with pytest.raises(SolverError, match=r"'ens001' \(an ensemble\) cannot be packaged: .*SOURCE=<exp>/tta<N>"):
        build_package(comp, "ens001", tmp_path / "pkg")
    (trained / "runs/synth/tiny/knn").mkdir(exist_ok=True)
    with pytest.raises(SolverError, match="'tiny/knn' cannot be packaged"):
        build_package(comp, "tiny/knn", tmp_path / "pkg")


def test_an_existing_package_is_replaced_only_with_force(trained, tmp_path):
    comp = Competition.load(trained, "synth")
    package = build_package(comp, "tiny", tmp_path / "pkg")
    before = {p: p.read_bytes() for p in package.rglob("*") if p.is_file()}
    with pytest.raises(SolverError, match="exists; nothing was overwritten. Rebuild it with --force"):
        build_package(comp, "tiny", package)
    broken = trained / "runs/synth/broken2"
    shutil.copytree(trained / "runs/synth/tiny", broken)
    (broken / "fold0/best.pt").unlink()
    with pytest.raises(SolverError, match="fold0/best.pt not found"):
        build_package(comp, "broken2", package, force=True)  # a failed rebuild keeps the old package
    assert {p: p.read_bytes() for p in package.rglob("*") if p.is_file()} == before
    (package / "stray.txt").write_text("from the old package")
    build_package(comp, "tiny/tta2", package, force=True)
    assert not (package / "stray.txt").exists() and json.loads((package / "package.json").read_text())["source"] == "tiny/tta2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_kaggle_slug():
    assert kaggle_slug("digits-exp001_resnet10t/tta8") == "digits-exp001-resnet10t-tta8"
    assert kaggle_slug("a/b") == "a-b-model"
    assert len(kaggle_slug("x" * 80)) == 50


def test_num_workers_auto_is_resolved_on_the_machine_that_runs_infer(trained, tmp_path, monkeypatch):
    comp = Competition.load(trained, "synth")
    trained_with = yaml.safe_load((trained / "runs/synth/tiny/config.yaml").read_text())["config"]["data"]["num_workers"]
    assert trained_with == 0  # training on this CPU resolved auto into 0
    package = build_package(comp, "tiny", tmp_path / "pkg")
    assert yaml.safe_load((package / "config.yaml").read_text())["config"]["data"]["num_workers"] == "auto"  # as the experiment says

    # infer.py on a machine where auto means one worker (a GPU box): its loaders get that machine's number
    import solver.submit.package

    monkeypatch.setattr(solver.submit.package, "default_num_workers", lambda device: 1)
    workers = []
    real_make_loader = solver.submit.package.make_loader
    monkeypatch.setattr(solver.submit.package, "make_loader", lambda *a, **kw: workers.append(kw["num_workers"]) or real_make_loader(*a, **kw))
    out = predict_package(package, trained / "data/synth", tmp_path / "sub.csv", "cpu")
    assert workers == [1, 1]  # one loader per fold
    expected = pd.read_csv(make_submission(comp, trained / "runs/synth/tiny", tmp_path / "expected.csv"), dtype=str)
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype=str), expected)


def test_a_number_of_workers_written_in_the_experiment_is_kept(trained, tmp_path):
    comp = Competition.load(trained, "synth")
    config = trained / "synth/configs/tiny.yaml"
    original = config.read_text()
    try:
        config.write_text(original.replace("batch_size: 8", "batch_size: 8\n  num_workers: 0"))
        package = build_package(comp, "tiny", tmp_path / "pkg")
    finally:
        config.write_text(original)
    assert yaml.safe_load((package / "config.yaml").read_text())["config"]["data"]["num_workers"] == 0
