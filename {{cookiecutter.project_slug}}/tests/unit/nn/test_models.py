import pickle

import pytest
import torch
from safetensors.torch import save_file

from solver.base.errors import SolverError
from solver.config.experiment import ModelSpec
from solver.nn.models import create_model


def test_any_timm_model_by_name_with_in_chans_and_classes():
    model = create_model(ModelSpec(name="test_resnet"), num_classes=7, in_chans=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(SolverError, match="'resnet188' is not a timm model.*resnet18"):
        create_model(ModelSpec(name="resnet188"), 3, 3)


@pytest.mark.parametrize("in_chans", [1, 4])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_3_channel_weights_load_into_other_channels_and_classes(tmp_path, in_chans, suffix):
    source = create_model(ModelSpec(name="test_resnet"), num_classes=1000, in_chans=3)
    path = tmp_path / f"weights{suffix}"
    state = source.state_dict()
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    model = create_model(ModelSpec(name="test_resnet", weights=str(path)), num_classes=5, in_chans=in_chans)
    key = "layer1.0.conv1.weight"
    assert torch.equal(model.state_dict()[key], state[key])  # the body is the file's
    first = [k for k in model.state_dict() if k.endswith("weight")][0]
    assert model.state_dict()[first].shape[1] == in_chans
    assert model.eval()(torch.randn(1, in_chans, 32, 32)).shape == (1, 5)


class Payload:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_weights_file_with_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Payload()}, f)
    torch.save({"x": Payload()}, tmp_path / "evil2.pth")
    for name in ("evil.pth", "evil2.pth"):
        with pytest.raises(SolverError, match="refused to unpickle"):
            create_model(ModelSpec(name="test_resnet", weights=str(tmp_path / name)), 3, 3)
    assert "pickle code ran" not in capsys.readouterr().out


def test_missing_or_wrong_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(SolverError, match="not found"):
        create_model(ModelSpec(name="test_resnet", weights=str(tmp_path / "nope.pth")), 3, 3)
    other = create_model(ModelSpec(name="test_efficientnet"), 3, 3)
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(SolverError, match="another architecture|does not fit"):
        create_model(ModelSpec(name="test_resnet", weights=str(tmp_path / "other.pth")), 3, 3)
