import pytest
import torch

from solver.config.experiment import ModelSpec, TrainSpec
from solver.nn.models import create_model
from solver.nn.optim import create_optimizer


@pytest.fixture(scope="module")
def model():
    return create_model(ModelSpec(name="test_resnet"), num_classes=3, in_chans=3)


def test_default_is_adam_at_1e4(model):
    opt = create_optimizer(model, TrainSpec())
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 1e-4


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_with_momentum_and_nesterov(model, nesterov):
    opt = create_optimizer(model, TrainSpec(optimizer="sgd", lr=0.1, momentum=0.8, nesterov=nesterov))
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["momentum"] == 0.8 and g["nesterov"] == nesterov for g in opt.param_groups)


def test_no_weight_decay_on_norms_and_biases(model):
    opt = create_optimizer(model, TrainSpec(optimizer="adamw", weight_decay=0.05))
    assert isinstance(opt, torch.optim.AdamW)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        expected = 0.0 if p.ndim <= 1 else 0.05  # biases and norm scales are 1-d
        assert decay_of[id(p)] == expected, name
