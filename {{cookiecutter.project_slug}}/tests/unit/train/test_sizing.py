"""make experiment: exp001 sized to the data and the device, each value with its reason, loadable as it is written."""

import shutil

import pytest
import yaml

from solver.base.errors import SolverError
from solver.commands import experiment as experiment_command
from solver.commands import new_competition as new_competition_command
from solver.competition.contract import Competition
from solver.competition.profile import DataProfile, profile_data
from solver.competition.scaffold import experiment_yaml
from solver.config.experiment import load_experiment_config
from solver.nn.models import weights_available
from solver.train import sizing
from solver.train.sizing import Device, choose_batch_size, choose_epochs, choose_image_size, sized_experiment, split_stages
from tests.synthetic import make_competition
from tests.unit.nn.test_pretrained import MODEL, cache_weights, hf_home  # noqa: F401  (hf_home is a fixture)

CPU, GPU, SMALL_GPU = Device("cpu"), Device("cuda", 80.0), Device("cuda", 8.0)


def profile(side: int = 16, n_train: int = 7291, **changes) -> DataProfile:
    """USPS's profile by default."""
    values = dict(n_train=n_train, n_test=2007, height=side, width=side, channels=1, sizes_vary=False, num_classes=10, task="multiclass")
    return DataProfile(**{**values, "smallest_class": 0.07, "largest_class": 0.16, "labels_per_row": 1.0, **changes})


@pytest.mark.parametrize(
    "side, device, pretrained, expected",
    [
        (16, CPU, False, 32),  # USPS: rounded up to a multiple of 32, not upscaled 14x to 224
        (28, CPU, False, 32),
        (28, CPU, True, 64),  # pretrained filters need at least 64
        (100, CPU, False, 128),
        (500, CPU, True, 224),  # what a CPU trains in an afternoon
        (500, GPU, True, 384),
        (256, GPU, True, 256),
    ],
)
def test_image_size_follows_the_native_size(side, device, pretrained, expected):
    choice = choose_image_size(profile(side), device, pretrained)
    assert choice.value == expected and str(side) in choice.why


def test_batch_size_by_size_device_and_rows():
    assert choose_batch_size(profile(), CPU, 32, 5).value == 64
    assert choose_batch_size(profile(), GPU, 32, 5).value == 256 and choose_batch_size(profile(), SMALL_GPU, 32, 5).value == 128
    assert choose_batch_size(profile(), CPU, 224, 5).value == 16
    small = choose_batch_size(profile(n_train=200), GPU, 32, 5)  # 160 rows a fold: at least ten steps an epoch
    assert small.value == 16 and "160 training rows" in small.why


def test_epochs_from_the_number_of_steps_within_bounds():
    assert choose_epochs(profile(), 64, 5, pretrained=False).value == 44  # 4000 steps at 91 a fold's epoch
    assert choose_epochs(profile(n_train=500_000), 64, 5, pretrained=False).value == 10
    assert choose_epochs(profile(n_train=500), 16, 5, pretrained=True).value == 30
    assert split_stages(44, pretrained=False) == [11, 26, 7] and split_stages(3, pretrained=False) == [1, 1, 1]
    assert split_stages(20, pretrained=True) == [17, 3]


@pytest.mark.parametrize("pretrained", [False, True])
def test_the_written_file_is_a_valid_experiment_with_a_reason_on_every_value(tmp_path, pretrained):
    path = tmp_path / "exp.yaml"
    path.write_text(sized_experiment(profile(), 5, "usps", CPU, pretrained=pretrained))
    cfg = load_experiment_config(path)
    assert cfg.model.pretrained is pretrained and cfg.data.image_size == 64 if pretrained else 32
    assert sum(s.epochs for s in cfg.train.stages) == cfg.train.epochs
    assert cfg.train.stages[-1].aug_p == 0.0  # the clean fine-tune last
    raw = yaml.safe_load(path.read_text())
    lines = path.read_text().splitlines()
    for key in ("name", "image_size", "batch_size", "cache_images"):
        assert any(line.strip().startswith(f"{key}:") and "#" in line for line in lines), key
    assert raw["model"]["name"] == ("resnet18.a1_in1k" if pretrained else "resnet10t")


def test_imbalance_is_named_in_the_file():
    text = sized_experiment(profile(smallest_class=0.01, largest_class=0.5), 5, "c", CPU, pretrained=False)
    assert "imbalanced (50x" in text


def test_weights_in_the_cache_mean_pretrained_and_none_offline_mean_from_scratch(hf_home, monkeypatch):  # noqa: F811
    available, why = weights_available(MODEL)
    assert not available and "HF_HUB_OFFLINE is set" in why
    cache_weights(hf_home)
    available, why = weights_available(MODEL)
    assert available and "in the Hugging Face cache" in why
    monkeypatch.setattr(sizing, "weights_available", lambda name: (False, "offline"))
    assert "pretrained: false" in sized_experiment(profile(), 5, "c", CPU)
    monkeypatch.setattr(sizing, "weights_available", lambda name: (True, "cached"))
    assert "pretrained: true" in sized_experiment(profile(), 5, "c", CPU)


def test_make_experiment_replaces_the_generic_exp001_keeps_an_edited_one(tmp_path, hf_home, capsys):  # noqa: F811
    make_competition(tmp_path, n_train=40, channels=1, size=20)
    configs = tmp_path / "synth" / "configs"
    (configs / "exp001.yaml").write_text(experiment_yaml("synth", pretrained=True))
    run = lambda *args: experiment_command.main(["--root", str(tmp_path), "--comp", "synth", *args])  # noqa: E731
    run()
    assert "sized to its data" in (configs / "exp001.yaml").read_text() and "wrote" in capsys.readouterr().out
    (configs / "exp001.yaml").write_text((configs / "exp001.yaml").read_text() + "# my edit\n")
    run()
    assert (configs / "exp002.yaml").is_file() and "# my edit" in (configs / "exp001.yaml").read_text()
    with pytest.raises(SolverError, match="exp001.yaml exists; nothing was written"):
        run("--name", "exp001")
    run("--name", "exp001", "--force", "--from-scratch")
    cfg = load_experiment_config(configs / "exp001.yaml")
    comp = Competition.load(tmp_path, "synth")
    assert cfg.data.image_size == 32 and profile_data(comp).native_size == 20 and not cfg.model.pretrained


def test_make_competition_sizes_exp001_when_the_data_is_there(tmp_path, hf_home, capsys):  # noqa: F811
    make_competition(tmp_path, name="first", n_train=40, channels=1, size=20)  # data/first/ in the default contract's layout
    shutil.rmtree(tmp_path / "first")
    new_competition_command.main(["--root", str(tmp_path), "--name", "first"])
    assert "exp001 is sized to data/first/" in capsys.readouterr().out
    assert "sized to its data" in (tmp_path / "first/configs/exp001.yaml").read_text()
    new_competition_command.main(["--root", str(tmp_path), "--name", "second"])  # no data: the generic recipe
    out = capsys.readouterr().out
    assert "make experiment COMP=second" in out
    assert (tmp_path / "second/configs/exp001.yaml").read_text() == experiment_yaml("second", pretrained=True)
