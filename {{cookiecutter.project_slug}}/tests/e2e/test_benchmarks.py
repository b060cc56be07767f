"""The benchmarks in benchmarks/ run at tiny sizes and print every row of their tables (times are not checked)."""

import importlib.util
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import process_state_kept


def run_script(repo, script: str, *args: str) -> str:
    """`python benchmarks/<script> args` as a user runs it, and what it printed."""
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / script), *args], capture_output=True, text=True, timeout=300, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def bench(repo, capfd, monkeypatch):
    """Runs benchmarks/<script>'s main() in this process, with the sys.argv that `python benchmarks/<script> args`
    gives it, and returns what it printed, its subprocesses' output included (captured at the file descriptors).

    In this process rather than a new one: each launch imported torch, timm and the solver again, about 9 s of CPU,
    ten times in this file. test_knn_backends_prints_every_backend runs its script as a user does (run_script)."""

    monkeypatch.chdir(repo)  # where run_script runs them

    def run(script: str, *args: str) -> str:
        path = repo / "benchmarks" / script
        name = f"benchmark_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        argv = sys.argv
        sys.modules[name], sys.argv = module, [str(path), *args]
        capfd.readouterr()  # only this run's output
        try:
            with process_state_kept():  # train_throughput.py --threads sets this process's threads
                spec.loader.exec_module(module)
                module.main()
        finally:
            sys.argv = argv
            sys.modules.pop(name, None)
        return capfd.readouterr().out

    return run


def table(stdout: str) -> dict[str, list[str]]:
    """Markdown table rows of the output by their first cell (header and separator left out)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in stdout.splitlines() if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows[1:]}


def test_knn_backends_prints_every_backend(repo):
    out = run_script(repo, "knn_backends.py", "--n", "1500", "--dim", "16", "--queries", "40", "--nmslib-python", f"again={sys.executable}")
    rows = table(out)
    names = ["exact (solver, numpy)", "nmslib HNSW via solver (this python)", "nmslib HNSW via solver (again)"]
    try:
        import hnswlib  # noqa: F401

        names.append("hnswlib HNSW")
    except ImportError:
        assert "hnswlib not installed (pip install hnswlib): skipped" in out
    assert list(rows) == names
    recalls = {name: float(cells[4]) for name, cells in rows.items()}
    assert recalls["exact (solver, numpy)"] == 1.0
    assert all(0.0 <= r <= 1.0 for r in recalls.values())
    # Same data, same graph parameters: on 1500 easy vectors every HNSW finds nearly all true neighbours.
    assert min(recalls.values()) >= 0.9
    assert rows["nmslib HNSW via solver (this python)"][0] in ("yes", "no")
    # One verdict line per HNSW backend ("pays for its build after N queries" or "never pays for its build").
    assert sum("pays for its build" in line for line in out.splitlines()) == len(names) - 1


def test_knn_backends_rejects_a_bad_interpreter_flag(repo):
    proc = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "knn_backends.py"), "--n", "100", "--dim", "4", "--nmslib-python", "no-label"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "must be LABEL=PATH" in proc.stderr


def test_stack_overhead_prints_the_peer_and_every_stack(bench):
    out = bench("stack_overhead.py", "--rows", "300", "--test-rows", "30", "--classes", "3", "--models", "2", "--folds", "3")
    rows = table(out)
    assert len(rows) == 4
    peer, *stacks = rows.values()
    assert list(rows)[0].startswith("peer: lightgbm.cv") and peer[1] == "1.00x" and all(r[1].endswith("x") for r in stacks)
    for cells in rows.values():
        loss, acc, shuffled_loss, shuffled_acc = map(float, cells[2:6])
        assert 0 < loss and 0 <= acc <= 1 and 0 < shuffled_loss and 0 <= shuffled_acc <= 1
        assert acc > shuffled_acc  # the real labels carry signal; shuffled ones do not


def test_stack_overhead_on_real_sources_scores_each_run_on_the_held_out_answers(bench, tmp_path):
    """--comp/--sources: the matrix is two finished sources of a competition; every run gets its held-out columns."""
    import numpy as np
    import yaml

    from solver.competition.contract import Competition
    from solver.competition.folds import folds_hash, load_folds
    from tests.synthetic import make_competition

    make_competition(tmp_path, n_train=240, n_test=30, holdout_answers="answers.csv")
    comp = Competition.load(tmp_path, "synth")
    load_folds(comp)
    train, test = comp.read_train(), comp.read_test()
    truth = {"train": comp.encode_targets(train), "test": np.arange(240, 270) % 3}  # make_competition: class = row index % 3
    pd.DataFrame({"id": test["id"], "label": [comp.classes[k] for k in truth["test"]]}).to_csv(comp.data_dir / "answers.csv", index=False)
    rng = np.random.default_rng(0)
    for name, strength in (("exp001", 2.0), ("exp002", 1.0)):  # two sources that know the labels, one better than the other
        (comp.runs_dir / name).mkdir(parents=True)
        for split, ids in (("oof", train["id"]), ("test", test["id"])):
            probs = rng.dirichlet(np.ones(3), len(ids)) + strength * np.eye(3)[truth["train" if split == "oof" else "test"]]
            frame = pd.DataFrame(probs / probs.sum(1, keepdims=True), columns=comp.classes)
            frame.insert(0, "id", ids.to_numpy())
            frame.to_csv(comp.runs_dir / name / f"{split}.csv", index=False)
        (comp.runs_dir / name / "config.yaml").write_text(yaml.safe_dump({"classes": comp.classes, "folds_hash": folds_hash(comp)}))
    out = bench("stack_overhead.py", "--root", str(tmp_path), "--comp", "synth", "--sources", "exp001,exp002")
    assert "240 x 6 matrix (2 models x 3 classes), 30 test rows" in out
    rows = table(out)
    assert len(rows) == 4 and list(rows)[0].startswith("peer: lightgbm.cv")
    for cells in rows.values():
        oof_loss, oof_acc, held_loss, held_acc, loss_gap, acc_gap = map(float, [cells[2], cells[3], *cells[6:10]])
        assert 0.9 <= held_acc <= 1 and 0 <= held_loss  # the inputs know the answers: every stack learns them
        assert loss_gap == pytest.approx(held_loss - oof_loss, abs=2e-4) and acc_gap == pytest.approx(oof_acc - held_acc, abs=2e-4)


def test_tta_cost_prints_plain_random_and_fixed_views(bench):
    out = bench("tta_cost.py", "--images", "8", "--views", "4", "--size", "16", "--batch", "8")
    assert "N plain forward passes" in out and "solver TTA-4 (random D4 views)" in out and "solver TTA=auto path (4 fixed views)" in out


def test_training_throughput_prints_solver_bare_and_their_ratio(bench):
    out = bench("train_throughput.py", "--size", "16", "--batch", "8", "--images", "16", "--repeats", "1", "--threads", "1")
    assert "solver" in out and "bare" in out and "ratio" in out.lower()


def test_parallel_folds_prints_sequence_side_by_side_and_their_ratio(bench):
    out = bench("parallel_folds.py", "--model", "test_resnet", "--size", "16", "--images", "24", "--epochs", "1", "--no-oversubscribed")
    assert list(table(out)) == ["sequence (one job, --fold 0,1)", "side by side (--jobs 2)"]
    assert out.count("threads: ") == 2  # each side-by-side job said its share of the cores
    assert "ratio side by side / sequence:" in out


def test_loader_gpu_check_and_prior_shift_run_on_a_trained_competition(bench, tmp_path):
    from solver.train.run import train_experiment
    from tests.synthetic import make_competition

    make_competition(tmp_path)
    train_experiment(tmp_path, "synth", "tiny")
    where = ["--root", str(tmp_path), "--comp", "synth"]
    loader = bench("loader_throughput.py", *where, "--exp", "tiny", "--batches", "2", "--repeats", "1")
    assert "img/s" in loader
    gpu = bench("gpu_check.py", *where, "--exp", "tiny", "--batches", "2", "--repeats", "1", "--device", "cpu")
    assert "baseline (fp32, contiguous, eager)" in gpu and "skipped" in gpu  # AMP and compile need CUDA
    shift = bench("prior_shift_oof.py", *where, "--source", "tiny", "--shifts", "2", "--rows", "40")
    samples = [line.split()[0] for line in shift.splitlines() if line.strip().startswith(("none", "dirichlet"))]
    assert samples == ["none", "dirichlet", "dirichlet"]  # the unshifted control and two shifted samples
    assert "prior MAE" in shift and "log loss" in shift and "accuracy" in shift


def test_level2_gain_prints_every_source_against_the_best_single_model(bench, tmp_path):
    """Two tiny models on a synthetic Kaggle-format competition: every stage runs and has a row; a second run reuses
    the trained folds (resumable)."""
    from tests.synthetic import make_competition

    make_competition(tmp_path / "kaggle", n_train=60, n_test=18, size=16)
    data = tmp_path / "kaggle/data/synth"
    test = pd.read_csv(data / "test.csv")
    labels = ["cat", "dog", "fox"]  # make_competition's classes; row i of the whole set is class i % 3
    answers = test.assign(label=[labels[(60 + i) % 3] for i in range(len(test))])
    answers.to_csv(tmp_path / "answers.csv", index=False)
    args = ["--root", str(tmp_path / "repo"), "--data", str(data), "--answers", str(tmp_path / "answers.csv"), "--comp", "tiny"]
    out = bench("level2_gain.py", *args, "--size", "16", "--epochs", "3", "--batch", "16", "--folds", "2", "--tta", "2", "--draws", "20")
    rows = table(out)
    assert {"a_resnet10t", "b_regnetx", "a_resnet10t/tta2", "a_resnet10t/knn", "ens_mean", "ens_caruana", "stack", "stack_lgbm", "stack_tta"} <= set(
        rows
    )
    best = next(line for line in out.splitlines() if "against the best single model on CV" in line)
    reference = best.split("(")[1].split(")")[0]
    assert reference in ("a_resnet10t", "b_regnetx")
    assert rows[reference][3] == "+0.0000" and rows[reference][5] == "+0.0000"  # the reference against itself
    assert all(float(cells[4]) >= 0 and float(cells[6]) >= 0 for cells in rows.values())  # standard errors
    again = bench("level2_gain.py", *args, "--size", "16", "--epochs", "3", "--batch", "16", "--folds", "2", "--tta", "2", "--draws", "20")
    assert "nothing to train" in again
