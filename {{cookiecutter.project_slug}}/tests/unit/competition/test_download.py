import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from solver.base.errors import SolverError
from solver.competition.check_data import check_data
from solver.competition.contract import Competition
from solver.competition.kaggle import download
from tests.conftest import solver_command
from tests.synthetic import make_competition


@pytest.fixture
def kaggle_files(tmp_path) -> Path:
    """A competition's Kaggle zip: made from a synthetic competition's files, which are then removed."""
    make_competition(tmp_path, n_train=8, n_test=2, kaggle_slug="synth-comp")
    data = tmp_path / "data/synth"
    archive = tmp_path / "synth-comp.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(data.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(data))
    shutil.rmtree(data)
    return archive


# The kaggle CLI's own check (kaggle 1.8): the API token (KAGGLE_API_TOKEN or ~/.kaggle/access_token), else the legacy
# key (KAGGLE_USERNAME and KAGGLE_KEY, or kaggle.json in KAGGLE_CONFIG_DIR or ~/.kaggle); a token the server rejects
# ("expired" here) falls back to the legacy key, and without one the CLI says so on stdout and exits 1.
FAKE_AUTH = """\
import os, pathlib
kaggle_home = pathlib.Path.home() / ".kaggle"
token_file = kaggle_home / "access_token"
token = os.environ.get("KAGGLE_API_TOKEN") or (token_file.read_text().strip() if token_file.is_file() else "")
config = pathlib.Path(os.environ.get("KAGGLE_CONFIG_DIR") or kaggle_home) / "kaggle.json"
legacy = (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")) or config.is_file()
if token in ("", "expired") and not legacy:
    print("You must authenticate before you can call the Kaggle API.")
    print("Follow the instructions to authenticate at: https://github.com/Kaggle/kaggle-cli/blob/main/docs/README.md#authentication")
    sys.exit(1)
"""


def fake_kaggle(tmp_path, monkeypatch, archive: Path | None = None, status: int = 0) -> Path:
    """A kaggle executable on PATH that checks credentials as the real one, records its arguments, and copies the zip
    into the -p folder (download) or says it submitted (submit)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "kaggle_calls.txt"
    script = bin_dir / "kaggle"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        + FAKE_AUTH
        + f"if {status}: print('403 - Forbidden', file=sys.stderr); sys.exit({status})\n"
        "if sys.argv[2] == 'submit': print('Successfully submitted'); sys.exit(0)\n"
        "out = sys.argv[sys.argv.index('-p') + 1]\n"
        f"shutil.copy({str(archive)!r}, out)\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return calls


def no_credentials(tmp_path, monkeypatch) -> None:
    """HOME in tmp_path, and none of the kaggle variables set."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "KAGGLE_ENABLE_OAUTH", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)


def give_credentials(kind: str, tmp_path, monkeypatch) -> None:
    kaggle_home = tmp_path / "home/.kaggle"
    if kind == "KAGGLE_API_TOKEN":
        monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_0123")
    elif kind == "access_token":
        kaggle_home.mkdir(parents=True)
        (kaggle_home / "access_token").write_text("KGAT_0123\n")
    elif kind == "kaggle.json":
        kaggle_home.mkdir(parents=True)
        (kaggle_home / "kaggle.json").write_text('{"username": "me", "key": "secret"}')
    elif kind == "KAGGLE_CONFIG_DIR":
        (tmp_path / "config").mkdir()
        (tmp_path / "config/kaggle.json").write_text('{"username": "me", "key": "secret"}')
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "config"))
    else:  # the legacy key in the environment
        monkeypatch.setenv("KAGGLE_USERNAME", "me")
        monkeypatch.setenv("KAGGLE_KEY", "secret")


CREDENTIALS = ["KAGGLE_API_TOKEN", "access_token", "kaggle.json", "KAGGLE_CONFIG_DIR", "KAGGLE_USERNAME"]


def test_download_unzips_into_the_data_folder(tmp_path, monkeypatch, kaggle_files):
    calls = fake_kaggle(tmp_path, monkeypatch, kaggle_files)
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    comp = Competition.load(tmp_path, "synth")
    written = download(comp)
    assert [p.name for p in written] == ["sample_submission.csv", "test", "test.csv", "train", "train.csv"]
    assert calls.read_text().startswith(f"competitions download -c synth-comp -p {comp.data_dir}/.download.")  # a temporary folder
    assert sorted(p.name for p in comp.data_dir.iterdir()) == ["sample_submission.csv", "test", "test.csv", "train", "train.csv"]  # no zip, no temp
    assert check_data(comp).problems == []
    # again: files already there are kept unless forced
    (comp.data_dir / "train.csv").write_text("id,label\nmine,cat\n")
    with pytest.raises(SolverError, match=r"already has sample_submission.csv, test, test.csv, train, train.csv: nothing was replaced"):
        download(comp)
    assert (comp.data_dir / "train.csv").read_text() == "id,label\nmine,cat\n"
    download(comp, force=True)
    assert check_data(comp).problems == []


def test_failed_download_writes_nothing(tmp_path, monkeypatch, kaggle_files):
    fake_kaggle(tmp_path, monkeypatch, kaggle_files, status=1)
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    comp = Competition.load(tmp_path, "synth")
    with pytest.raises(SolverError, match=r"download -c synth-comp failed \(exit status 1.*competitions/synth-comp/rules"):
        download(comp)
    assert list(comp.data_dir.iterdir()) == []  # no temporary folder left either


def test_missing_slug_cli_and_credentials_are_clear_errors(repo, tmp_path, monkeypatch, kaggle_files):
    def run():
        env = {
            **os.environ,
            "HOME": str(tmp_path),
            "KAGGLE_USERNAME": "",
            "KAGGLE_KEY": "",
            "KAGGLE_API_TOKEN": "",
            "KAGGLE_CONFIG_DIR": str(tmp_path / "none"),
        }
        return subprocess.run(solver_command("download", "--root", str(tmp_path), "--comp", "synth"), capture_output=True, text=True, env=env)

    contract = tmp_path / "synth/competition.yaml"
    with_slug = contract.read_text()
    contract.write_text(with_slug.replace("kaggle_slug: synth-comp\n", ""))
    with pytest.raises(SolverError, match=r"kaggle_slug is not set in .*synth/competition.yaml"):
        download(Competition.load(tmp_path, "synth"))
    contract.write_text(with_slug)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # python, but no kaggle
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    with pytest.raises(SolverError, match="the kaggle CLI is not installed: pip install kaggle"):
        download(Competition.load(tmp_path, "synth"))
    fake_kaggle(tmp_path, monkeypatch, kaggle_files)
    result = run()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "error: no Kaggle credentials: create an API token (kaggle.com > Settings > API > Generate New Token), then export KAGGLE_API_TOKEN"
        in result.stderr
    )
    assert not (tmp_path / "kaggle_calls.txt").exists()  # the CLI was never called


@pytest.mark.parametrize("kind", CREDENTIALS)
def test_every_kind_of_kaggle_credentials_downloads(tmp_path, monkeypatch, kaggle_files, kind):
    fake_kaggle(tmp_path, monkeypatch, kaggle_files)
    no_credentials(tmp_path, monkeypatch)
    give_credentials(kind, tmp_path, monkeypatch)
    written = download(Competition.load(tmp_path, "synth"))
    assert [p.name for p in written] == ["sample_submission.csv", "test", "test.csv", "train", "train.csv"]


def test_credentials_the_cli_refuses_are_one_line(tmp_path, monkeypatch, kaggle_files, capsys):
    fake_kaggle(tmp_path, monkeypatch, kaggle_files)
    no_credentials(tmp_path, monkeypatch)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "expired")
    comp = Competition.load(tmp_path, "synth")
    with pytest.raises(SolverError) as err:
        download(comp)
    assert str(err.value).startswith(
        "kaggle competitions download -c synth-comp: the kaggle CLI did not accept the Kaggle credentials "
        "(You must authenticate before you can call the Kaggle API.); create an API token"
    )
    assert "\n" not in str(err.value) and "export KAGGLE_API_TOKEN=<token>" in str(err.value)
    assert "You must authenticate" in capsys.readouterr().out  # the CLI's own message reached the terminal too
    assert list(comp.data_dir.iterdir()) == []


def test_zips_inside_the_archive_are_extracted(tmp_path, monkeypatch):
    """Kaggle's layout of many competitions: train.zip (a train/ folder), test.zip (flat images), train.csv.zip."""
    make_competition(tmp_path, n_train=8, n_test=2, kaggle_slug="synth-comp")
    data = tmp_path / "data/synth"
    inner = tmp_path / "inner"
    inner.mkdir()
    with zipfile.ZipFile(inner / "train.zip", "w") as zf:
        for path in sorted((data / "train").iterdir()):
            zf.write(path, f"train/{path.name}")
    with zipfile.ZipFile(inner / "test.zip", "w") as zf:  # flat: its files belong in test/
        for path in sorted((data / "test").iterdir()):
            zf.write(path, path.name)
    with zipfile.ZipFile(inner / "train.csv.zip", "w") as zf:
        zf.write(data / "train.csv", "train.csv")
    archive = tmp_path / "synth-comp.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in [*sorted(inner.iterdir()), data / "test.csv", data / "sample_submission.csv"]:
            zf.write(path, path.name)
    shutil.rmtree(data)
    fake_kaggle(tmp_path, monkeypatch, archive)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_0123")
    comp = Competition.load(tmp_path, "synth")
    written = download(comp)
    assert [p.name for p in written] == ["sample_submission.csv", "test", "test.csv", "train", "train.csv"]  # no zip left
    assert len(list((comp.data_dir / "test").iterdir())) == 2
    assert check_data(comp).problems == []


@pytest.mark.parametrize("nested", [False, True])
def test_a_member_outside_the_data_folder_is_refused(tmp_path, monkeypatch, nested):
    """Zip slip: a member named ../x would be written outside data/<comp>/, also from a zip inside the archive."""
    make_competition(tmp_path, n_train=8, n_test=2, kaggle_slug="synth-comp")
    shutil.rmtree(tmp_path / "data/synth")
    evil = tmp_path / ("evil.zip" if nested else "synth-comp.zip")
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("train.csv", "id,label\n")
        zf.writestr("../../escaped.txt", "outside")
    archive = evil
    if nested:
        archive = tmp_path / "synth-comp.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.write(evil, "train.zip")
    fake_kaggle(tmp_path, monkeypatch, archive)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_0123")
    comp = Competition.load(tmp_path, "synth")
    with pytest.raises(SolverError, match=r"member '\.\./\.\./escaped.txt' would be written outside .*; refusing the archive"):
        download(comp)
    assert list(comp.data_dir.iterdir()) == [] and not list(tmp_path.rglob("escaped.txt"))
