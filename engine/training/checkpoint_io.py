"""Files training writes: the output model (official layout + JSON sidecar) and resumable train state.

The output ``MODEL.pt`` is a plain ``{name: tensor}`` state dict with exactly the key names and
shapes of the official checkpoints of its family, so the app's loader detects it like any
downloaded model. Everything else (size, schedule, data, steps, arch) goes to ``MODEL.json``
beside it; the loader never needs it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

from engine.atomic_file import atomic_write
from engine.errors import InputError, ModelFileError
from engine.models.checkpoint import sidecar_path

if TYPE_CHECKING:
    from engine.models.checkpoint import ModelConfig

STATE_FILE = "state.pt"
#: Suffixes of the output model file; the suffix picks the format.
MODEL_FORMATS = (".pt", ".safetensors")


def train_state_dir(model_path: str | Path) -> Path:
    """``MODEL.pt`` -> ``MODEL.pt.train-state/`` (checkpoints, sample grids)."""
    p = Path(model_path)
    return p.with_name(p.name + ".train-state")


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save, or safetensors for a ``.safetensors`` path (a dict of tensors), written atomically."""
    with atomic_write(path) as handle:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import save

            handle.write(save(obj))
        else:
            torch.save(obj, handle)


def write_model(model_path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write the official-layout state dict (float32, CPU, contiguous) and its JSON sidecar.

    Returns the sidecar path. ``meta`` must be JSON-serializable.
    """
    path = Path(model_path)
    plain = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone() for k, v in state_dict.items()}
    _atomic_save(plain, path)
    side = sidecar_path(path)
    with atomic_write(side) as handle:
        handle.write(json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
    return side


def read_meta(model_path: str | Path) -> Optional[dict[str, Any]]:
    """The sidecar metadata of a trained model, or None when there is none (official files)."""
    side = sidecar_path(model_path)
    if not side.is_file():
        return None
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def save_train_state(model_path: str | Path, state: dict[str, Any]) -> Path:
    """Save the full resumable state (model, EMA, optimizer, step, RNG states, config)."""
    path = train_state_dir(model_path) / STATE_FILE
    _atomic_save(state, path)
    return path


def load_train_state(model_path: str | Path) -> Optional[dict[str, Any]]:
    """The saved train state for ``model_path``, or None when there is none yet."""
    path = train_state_dir(model_path) / STATE_FILE
    if not path.is_file():
        return None
    from engine.models.checkpoint import load_plain_pickle

    try:
        return load_plain_pickle(path)
    except ModelFileError as exc:
        raise ModelFileError(f"cannot resume: {exc}") from exc
    except Exception as exc:  # truncated or foreign file
        raise ModelFileError(f"cannot resume: the training state {path} is unreadable ({exc})") from exc


# --------------------------------------------------------------------------- networks to train

#: Architectures ``--arch`` names. Channel multipliers follow the image size as in guided-diffusion
#: (fewer levels for smaller crops); attention sits at the 32/16/8 px feature maps (ADM) or 16 px (DDPM).
ARCHS = ("adm-small", "adm-256", "ddpm", "adm-tiny")
_ADM_MULT = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4), 32: (1, 2, 2, 2)}
_DDPM_MULT = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 2, 4), 64: (1, 2, 2, 2), 32: (1, 2, 2, 2)}


def _levels_at(size: int, levels: int, pixels: tuple[int, ...]) -> tuple[int, ...]:
    """Level indices whose feature map (size / 2**level) is one of ``pixels``."""
    return tuple(level for level in range(levels) if size // 2**level in pixels)


def network_config(arch: str, size: int) -> "ModelConfig":
    """The :class:`engine.models.checkpoint.ModelConfig` of a fresh ``arch`` network for crop ``size``.

    ADM heads are always 64 channels wide, because the loader assumes that when it detects a file.
    """
    from engine.models.checkpoint import ModelConfig

    if arch not in ARCHS:
        raise InputError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if size not in _ADM_MULT:
        raise InputError(f"training size must be one of {', '.join(map(str, sorted(_ADM_MULT)))}, got {size}")
    if arch == "ddpm":
        mult = _DDPM_MULT[size]
        return ModelConfig(family="ddpm", model_channels=128, channel_mult=mult, num_res_blocks=2,
                           attention_levels=_levels_at(size, len(mult), (16,)), image_size=size, out_channels=3,
                           num_head_channels=0, use_scale_shift_norm=False, resblock_updown=False)
    if arch == "adm-tiny":  # about 0.8 M parameters: tests and smoke runs only
        return ModelConfig(family="adm", model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                           attention_levels=(1,), image_size=size, out_channels=6, num_head_channels=64)
    mult = _ADM_MULT[size]
    return ModelConfig(family="adm", model_channels=256 if arch == "adm-256" else 128, channel_mult=mult,
                       num_res_blocks=2, attention_levels=_levels_at(size, len(mult), (32, 16, 8)),
                       image_size=size, out_channels=6, num_head_channels=64)


def build_network(arch: str, size: int, init: Optional[str] = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A float32 network to train and a JSON-ready description (family, learned_sigma, config).

    With ``init`` (a checkpoint path), the architecture is detected from the file through the
    app's safe loader (``weights_only``) and its weights are loaded; ``arch`` is then a label.
    """
    from engine.models import checkpoint as ckpt

    if init:
        state = ckpt.load_state_dict(init)
        config = ckpt.detect_config(state)
        if config.family != "adm" and config.family != "ddpm":
            raise InputError(f"{init} is a {config.family}, not a diffusion UNet that can be fine-tuned")
        if config.class_cond:
            raise InputError(f"{init} is class-conditional; fine-tuning supports unconditional models only")
        model = ckpt.build_model(config)
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    else:
        config = network_config(arch, size)
        model = ckpt.build_model(config)
    info = {"family": config.family, "learned_sigma": bool(config.learn_sigma),
            "config": json.loads(json.dumps(dataclasses.asdict(config)))}
    if init:
        info["init"] = str(init)
    return model.float(), info
