"""timm models by name: from scratch, from a local weights file (never pickle), or from timm's pretrained weights.

Pretrained weights (model.pretrained: true) go through timm's own loading: the Hugging Face hub and its cache
(HF_HOME, HF_HUB_OFFLINE=1 respected), the first conv adapted to in_chans and the classifier re-initialised for
num_classes by timm. Offline and not cached is one clear error saying how to get them.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv, get_pretrained_cfg, resolve_pretrained_cfg, split_model_name_tag

from solver.base.errors import SolverError, did_you_mean
from solver.config.experiment import ModelSpec


def create_model(spec: ModelSpec, num_classes: int, in_chans: int, root: Path = Path(".")) -> torch.nn.Module:
    check_model_name(spec)
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=spec.drop_rate, **spec.kwargs)
    try:
        model = _create_pretrained(spec.name, kwargs) if spec.pretrained else timm.create_model(spec.name, pretrained=False, **kwargs)
    except TypeError as err:
        raise SolverError(f"model.kwargs for '{spec.name}': {err}") from None
    if spec.weights:
        path = Path(spec.weights)
        load_local_weights(model, path if path.is_absolute() else root / path)
    return model


def pretrained_config(spec: ModelSpec) -> dict:
    """What create_model(spec).pretrained_cfg holds (mean, std, ...), resolved as timm resolves it, without building the model:
    its tag, or model.kwargs' pretrained_cfg and pretrained_cfg_overlay."""
    check_model_name(spec)
    arch, tag = split_model_name_tag(spec.name)
    cfg = spec.kwargs.get("pretrained_cfg") or tag or None
    return resolve_pretrained_cfg(arch, cfg, spec.kwargs.get("pretrained_cfg_overlay")).to_dict()


def architecture_only(spec: ModelSpec) -> ModelSpec:
    """The same model without its starting weights: for loading a checkpoint that holds every weight."""
    return spec.model_copy(update={"pretrained": False, "weights": None})


def check_model_name(spec: ModelSpec) -> None:
    """A timm architecture, a tag timm knows for it, and weights for that tag when model.pretrained is set."""
    if not timm.is_model(spec.name):
        raise SolverError(f"model.name: '{spec.name}' is not a timm model ({did_you_mean(spec.name, timm.list_models())})")
    arch, tag = split_model_name_tag(spec.name)
    with_weights = timm.list_pretrained(f"{arch}.*")
    try:
        default_tag = get_pretrained_cfg(spec.name).tag  # the tag timm picks for an untagged name
    except RuntimeError:  # timm: "Invalid pretrained tag (x) for arch"
        raise SolverError(f"model.name: timm has no tag '{tag}' for {arch}; tags with weights: {', '.join(with_weights) or 'none'}") from None
    if spec.pretrained and f"{arch}.{tag or default_tag}" not in with_weights:
        others = with_weights or _related_with_weights(arch)
        raise SolverError(
            f"model.pretrained: timm has no pretrained weights for '{spec.name}'; "
            f"{'its tags with weights' if with_weights else 'related models with weights'}: {', '.join(others) or 'none'} "
            "(or set model.pretrained: false to train it from scratch)"
        )


def _related_with_weights(arch: str) -> list[str]:
    """Models with weights whose names start like arch's (coatnet_0_224 -> coatnet_0*: coatnet_0_rw_224.sw_in1k)."""
    parts = arch.split("_")
    for n in range(len(parts), 0, -1):
        found = timm.list_pretrained("_".join(parts[:n]) + "*")
        if found:
            return found[:10]
    return []


def _create_pretrained(name: str, kwargs: dict) -> torch.nn.Module:
    """timm.create_model(pretrained=True); the hub's errors when the weights can be neither found nor fetched -> one line."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        import httpx  # the hub's HTTP client (huggingface_hub >= 1.0); its transport errors are no OSError

        transport_errors: tuple = (httpx.TransportError,)
    except ImportError:
        transport_errors = ()
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except LocalEntryNotFoundError:
        why = f"the pretrained weights of {name} are not in the Hugging Face cache {constants.HF_HUB_CACHE}" + (
            " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else " and could not be downloaded"
        )
    except (OSError, ConnectionError, *transport_errors) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        why = f"the pretrained weights of {name} could not be fetched into {constants.HF_HUB_CACHE}: {reason}"
    raise SolverError(f"model.pretrained: {why}. {ways_to_weights(name)}")


def weights_available(name: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Can timm.create_model(name, pretrained=True) get its weights here? (yes/no, why): in the Hugging Face cache, or the
    hub answers within timeout seconds (never asked under HF_HUB_OFFLINE=1). Never downloads the weights themselves."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    cfg = get_pretrained_cfg(name)
    hub_id = cfg.hf_hub_id or name
    files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]  # timm's order
    if any(isinstance(try_to_load_from_cache(hub_id, file), str) for file in files):
        return True, f"the weights of {name} are in the Hugging Face cache {constants.HF_HUB_CACHE}"
    if constants.HF_HUB_OFFLINE:
        return False, f"the weights of {name} are not in the Hugging Face cache {constants.HF_HUB_CACHE} and HF_HUB_OFFLINE is set"
    try:
        get_hf_file_metadata(hf_hub_url(hub_id, files[0]), timeout=timeout)
    except Exception as err:  # any failure to reach the hub (DNS, proxy, timeout, HTTP error) means: not available now
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return False, f"the weights of {name} are not cached and {constants.ENDPOINT} did not answer ({reason[:120]})"
    return True, f"{constants.ENDPOINT} has the weights of {name} (the first training fetches them into the cache)"


def ways_to_weights(name: str) -> str:
    hub_id = get_pretrained_cfg(name).hf_hub_id or name
    return (
        "Either download them into the cache on a connected machine, "
        f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\" (or hf download {hub_id}), "
        "and copy its HF_HOME folder here (HF_HOME=<that folder>); or set model.weights: <a local weights file>; "
        "or set model.pretrained: false to train from scratch"
    )


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
