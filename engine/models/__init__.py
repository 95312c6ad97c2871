"""Networks, safe checkpoint loading with family detection, and the denoiser/guidance wrappers.

Public entry points: :func:`load_denoiser`, :func:`load_guidance`, :func:`model_info`.
A model spec is ``"test-tiny"`` (tiny random ADM), ``"test-tiny-ddpm"`` (tiny random DDPM Model),
a checkpoint path, or a catalog id (resolved by ``engine.models.catalog``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from engine.device import is_cuda
from engine.errors import ModelFileError
from engine.models.attention import set_attention_backend, set_default_attention_backend
from engine.models.checkpoint import (
    ModelConfig,
    a_family,
    build_model,
    detect_config,
    load_model,
    load_state_dict,
    model_from_state_dict,
    sidecar_path,
)
from engine.models.denoiser import Denoiser, Guidance
from engine.models.tiny import build_tiny, tiny_adm_config, tiny_classifier_config, tiny_ddpm_config
from engine.models.cuda_graphs import GraphedDenoiser
from engine.models.speed import channels_last_pays, compile_network, prepare_network
from engine.models.wrappers import ClassifierGuidance, EpsDenoiser
from engine.request import DEFAULT_CLASSIFIER

__all__ = [
    "ClassifierGuidance", "Denoiser", "EpsDenoiser", "Guidance", "ModelConfig", "TINY_MODELS", "build_model",
    "detect_config", "load_denoiser", "load_guidance", "load_model", "load_state_dict", "model_from_state_dict",
    "model_files", "model_info", "set_attention_backend", "set_default_attention_backend", "tiny_adm_config",
    "tiny_classifier_config", "tiny_ddpm_config",
]

#: Random-weight models for tests and demos of the machinery (never a real restoration).
TINY_MODELS = {"test-tiny": tiny_adm_config, "test-tiny-ddpm": tiny_ddpm_config}
#: Window the pipeline should use for the tiny models (they accept any multiple of 4).
TINY_IMAGE_SIZE = 256
CLASSIFIER_ID = DEFAULT_CLASSIFIER


def _resolve(model: str) -> Path:
    """A checkpoint path or a catalog id -> existing file. Raises ModelFileError."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    try:
        from engine.models.catalog import resolve_model_file
    except ImportError as exc:
        raise ModelFileError(f"unknown model id {model!r} (and no file by that name exists)") from exc
    return Path(resolve_model_file(model))


def model_files(model: str) -> Tuple[Path, ...]:
    """The files loading ``model`` reads: its checkpoint and the metadata beside it (whether or not
    that exists yet); none for a built-in network. Raises ModelFileError like the loaders."""
    if model in TINY_MODELS:
        return ()
    path = _resolve(model)
    return path, sidecar_path(path)


def sidecar_image_size(path: Path) -> Optional[int]:
    """The native window of a model we trained (``MODEL.json`` beside ``MODEL.pt``), else None."""
    side = sidecar_path(path)
    try:
        size = int(json.loads(side.read_text(encoding="utf-8")).get("image_size", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return size if size > 0 else None


def _load_network(model: str, device: torch.device) -> Tuple[nn.Module, ModelConfig, bool]:
    """(network, config, is_random) for any model spec."""
    if model in TINY_MODELS:
        config = TINY_MODELS[model]()
        return build_tiny(config, device=device), config, True
    path = _resolve(model)
    try:
        net, config = load_model(path, device=device)
    except ModelFileError:
        _refuse_other_role(path)
        raise
    size = sidecar_image_size(path)
    return net, (config.replace(image_size=size) if size else config), False


def _refuse_other_role(path: Path) -> None:
    """A file that is a model of another kind (e.g. a clean-up network) is named as such."""
    from engine.models import kinds

    try:
        kind = kinds.inspect_file(path)
    except ModelFileError:
        return  # nobody claims it: the loader's own message says what was expected
    kinds.refuse_role(kind, kinds.DIFFUSION, path.name,
                      "Choose it as the clean-up model (Clean up unknown damage, --cleanup) instead")


def load_denoiser(model: str, *, device: torch.device, precision: str = "fp32",
                  class_label: Optional[int] = None, compile: bool = False) -> Denoiser:
    """The ``Denoiser`` for a model spec: ``eps = d(x_t (B,3,H,W) float32, t (B,) int64 0..999)``.

    ``precision`` is a resolved name (fp32/bf16/fp16, see ``engine.device.pick_precision``);
    ``compile`` wraps the network in :class:`engine.models.speed.CompiledNetwork`. On CUDA the
    denoiser replays CUDA graphs.

    Raises ModelFileError for unknown ids / unsupported files, InputError for a missing class
    label on a class-conditional model or a classifier file given as the model."""
    net, config, is_random = _load_network(model, torch.device("cpu"))
    if config.family == "adm-classifier":
        raise ModelFileError(f"{model} is an ADM classifier, not a diffusion model; use it for guidance")
    image_size = TINY_IMAGE_SIZE if is_random else config.image_size
    # cast once on the host, then move: no per-call autocast copies, no float32 weights on the GPU
    nhwc = channels_last_pays(device, precision)
    net = prepare_network(net, precision=precision, channels_last=nhwc, device=device, inplace=True)
    if compile:
        net = compile_network(net)
    denoiser = EpsDenoiser(net, config, class_label=class_label, precision=precision, is_random=is_random,
                           image_size=image_size, channels_last=nhwc, name=model)
    return GraphedDenoiser(denoiser) if is_cuda(device) else denoiser


def load_guidance(model: str, *, class_label: Optional[int], scale: float, device: torch.device,
                  precision: str = "fp32", classifier: str = CLASSIFIER_ID) -> Optional[Guidance]:
    """Classifier guidance for ``model``, or None when it does not apply (scale 0, no label, or an
    unconditional DDPM model). ``"test-tiny"`` gets a tiny random 10-class classifier; a real
    ADM model uses ``classifier``: a catalog or imported id (the catalog's ``adm-256-classifier``
    by default) or a checkpoint file."""
    if not scale or class_label is None:
        return None
    if model in TINY_MODELS:
        if model != "test-tiny":
            return None
        config = tiny_classifier_config()
        classifier_net = build_tiny(config, device=device)
    else:
        classifier_net, config = load_model(_resolve(classifier), device=device)
        if config.family != "adm-classifier":
            raise ModelFileError(f"{classifier} is {a_family(config.family)} model, not an ADM classifier: "
                                 "guidance needs a classifier")
    return ClassifierGuidance(classifier_net, class_label, scale, precision=precision, num_classes=config.out_channels)


def _shapes_only(path: Path) -> Dict[str, Any]:
    """Tensor names -> meta tensors of the right shape, reading as little of the file as possible."""
    from engine.models.checkpoint import SAFETENSORS, checkpoint_format, load_plain_pickle, unwrap_state_dict

    try:
        if checkpoint_format(path) == SAFETENSORS:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        return unwrap_state_dict(load_plain_pickle(path, mmap=True), source=path.name)
    except ModelFileError:
        raise
    except Exception:  # noqa: BLE001 - load_state_dict below raises the proper ModelFileError
        return load_state_dict(path)


_PURPOSES = {
    "adm": "general photos (ImageNet-trained ADM); the default choice for restoration",
    "adm-cc": "class-conditional ADM: restoration steered towards one ImageNet class",
    "adm-classifier": "noisy-image classifier for classifier guidance (not a restorer)",
    "ddpm": "DDPM Model (ddim/SDEdit family): usually faces (CelebA-HQ) or one LSUN scene type",
}


def model_info(model_spec: str) -> Dict[str, Any]:
    """What the GUI shows about a model: family, parameter count, window size, purpose hint,
    configuration summary and whether the weights are random."""
    if model_spec in TINY_MODELS:
        config, is_random = TINY_MODELS[model_spec](), True
    else:
        path = _resolve(model_spec)
        config, is_random = detect_config(_shapes_only(path)), False
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(config).parameters())
    key = "adm-cc" if config.family == "adm" and config.class_cond else config.family
    purpose = _PURPOSES[key]
    if is_random:
        purpose = "random weights for testing the machinery only; the output is NOT a restoration"
    return {
        "family": config.family,
        "params": params,
        "image_size": TINY_IMAGE_SIZE if is_random else config.image_size,
        "purpose": purpose,
        "is_random": is_random,
        "learn_sigma": config.learn_sigma,
        "class_cond": config.class_cond,
        "num_classes": config.num_classes if config.family == "adm" else (
            config.out_channels if config.family == "adm-classifier" else None),
        "model_channels": config.model_channels,
        "channel_mult": list(config.channel_mult),
        "num_res_blocks": config.num_res_blocks,
        "attention_levels": list(config.attention_levels),
        "size_multiple": config.size_multiple,
    }
