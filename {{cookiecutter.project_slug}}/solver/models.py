"""timm models by name, from scratch or from a local weights file (never pickle, never the network)."""

from __future__ import annotations

import pickle
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv

from solver.config import ModelSpec
from solver.errors import SolverError, did_you_mean


def create_model(spec: ModelSpec, num_classes: int, in_chans: int, root: Path = Path(".")) -> torch.nn.Module:
    if not timm.is_model(spec.name):
        raise SolverError(f"model.name: '{spec.name}' is not a timm model ({did_you_mean(spec.name, timm.list_models())})")
    try:
        model = timm.create_model(spec.name, pretrained=False, num_classes=num_classes, in_chans=in_chans, drop_rate=spec.drop_rate, **spec.kwargs)
    except TypeError as err:
        raise SolverError(f"model.kwargs for '{spec.name}': {err}") from None
    if spec.weights:
        path = Path(spec.weights)
        load_local_weights(model, path if path.is_absolute() else root / path)
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a weights file as tensors only: weights_only=True executes no pickled code."""
    if not path.is_file():
        raise SolverError(f"model.weights: {path} not found (weights are never downloaded; put the file there)")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise SolverError(f"model.weights: {path} is not a safetensors file ({err}); download or convert it again") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise SolverError(f"model.weights: {path} is not a plain tensor checkpoint (refused to unpickle it): {str(err).splitlines()[0]}") from None
    for key in ("state_dict", "model", "model_ema"):  # common wrappers from training scripts
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_local_weights(model: torch.nn.Module, path: Path) -> None:
    """Load matching weights; adapt the first conv to in_chans and skip a classifier of another size."""
    state = read_state_dict(path)
    own = model.state_dict()
    cfg = model.pretrained_cfg
    first_conv = cfg.get("first_conv")
    first_convs = [first_conv] if isinstance(first_conv, str) else list(first_conv or [])
    for name in first_convs:
        key = f"{name}.weight"
        if key in state and key in own and state[key].shape[1] != own[key].shape[1]:
            state[key] = adapt_input_conv(own[key].shape[1], state[key])
    classifiers = cfg.get("classifier")
    classifiers = [classifiers] if isinstance(classifiers, str) else list(classifiers or [])
    head_keys = {k for k in own if any(k.startswith(c + ".") for c in classifiers)}
    for key in head_keys:
        if key in state and state[key].shape != own[key].shape:
            del state[key]  # a new number of classes: the head starts from scratch
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if mismatched:
        raise SolverError(f"model.weights: {path} does not fit {model.pretrained_cfg.get('architecture')}: shape of {mismatched[0]} differs")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in head_keys]
    if missing:
        raise SolverError(f"model.weights: {path} lacks {len(missing)} weights of the model, e.g. {missing[0]}; is it for another architecture?")
