"""ResShift's model files: recognising them (the :mod:`engine.models.kinds` seam), reading their
configuration from the tensors, and loading them safely.

Two files make the fast upscaler: the denoiser (family ``resshift-unet``, role upscaler; e.g.
``resshift_realsrx4_s4_v3.pth``) and the VQ-f4 autoencoder it works in (family
``resshift-vq-f4``, role autoencoder; ``autoencoder_vq_f4.pth``). Files are read with
:func:`engine.models.checkpoint.read_checkpoint` (``weights_only=True`` or safetensors).

What the loader accepts, and why:

- a ``{"state_dict": ...}`` wrapper and keys prefixed ``module.`` (DistributedDataParallel) and/or
  ``_orig_mod.`` (``torch.compile``), as the public loader does;
- the denoiser's Swin buffers ``*.relative_position_index`` and ``*.attn_mask`` are skipped: they
  are recomputed for each tile size (see :mod:`engine.resshift.swin`);
- the autoencoder's ``loss.*`` tensors (the discriminator and LPIPS of a latent-diffusion training
  checkpoint) are skipped: they are not part of the network;
- every other tensor must be exactly one of the network's, with its shape (the configuration is
  detected from the shapes, then the network is built on the meta device and compared key by key).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import nn

from engine.errors import ModelFileError
from engine.models import kinds
from engine.models.checkpoint import read_checkpoint, unwrap_state_dict
from engine.resshift.autoencoder import AutoencoderConfig, VQAutoencoder
from engine.resshift.swin import rebuild_position_indices
from engine.resshift.unet import SwinUNet, SwinUNetConfig

UNET, AUTOENCODER = "resshift-unet", "resshift-vq-f4"
FAMILIES = {UNET: kinds.UPSCALER, AUTOENCODER: kinds.AUTOENCODER}
EXPECTED = ("a ResShift denoiser (keys like input_blocks.1.1.blocks.0.attn.qkv.weight) or its VQ-f4 autoencoder "
            "(keys like encoder.conv_in.weight and quantize.embedding.weight)")
LICENCE = "S-Lab License 1.0 (non-commercial)"
#: Keys the loader skips (see the module doc).
RECOMPUTED_BUFFERS = (".relative_position_index", ".attn_mask")
TRAINING_ONLY_PREFIX = "loss."
_PREFIXES = ("module.", "_orig_mod.")

StateDict = dict[str, torch.Tensor]


def _tensors(raw: object, source: str) -> Optional[StateDict]:
    """The tensor dict inside ``raw`` with wrapper prefixes removed, or None when there is none."""
    try:
        return without_prefixes(unwrap_state_dict(raw, source))
    except ModelFileError:
        return None


def without_prefixes(sd: StateDict) -> StateDict:
    """``sd`` with the ``module.`` / ``_orig_mod.`` prefixes every key has removed."""
    changed = True
    while changed and sd:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd, changed = {k[len(prefix):]: v for k, v in sd.items()}, True
    return sd


def family_of(sd: Mapping[str, torch.Tensor]) -> Optional[str]:
    unet_keys = ("time_embed.0.weight", "input_blocks.0.0.weight", "middle_block.1.patch_embed.proj.weight")
    if all(k in sd for k in unet_keys):
        return UNET
    if "encoder.conv_in.weight" in sd and "decoder.conv_out.weight" in sd and "quantize.embedding.weight" in sd:
        return AUTOENCODER
    return None


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise KeyError(key)
    return tuple(sd[key].shape)


def _indices(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in sd for m in [pattern.match(k)] if m})


def unet_config(sd: Mapping[str, torch.Tensor]) -> SwinUNetConfig:
    """The denoiser's configuration from its tensor shapes (KeyError/ValueError when they do not fit)."""
    if any(k.startswith("feature_extractor.") for k in sd):
        raise ValueError("a photo feature extractor (a model for another scale than ×4)")
    mc = _shape(sd, "time_embed.0.weight")[1]
    out_channels = _shape(sd, "out.2.weight")[0]
    mult, blocks, swin_levels, level, count, levels_image = [], [], [], 0, 0, None
    present = set(_indices(sd, "input_blocks."))
    for i in range(1, max(present) + 1):  # a pooling Downsample has no tensors: a missing index
        if i not in present or f"input_blocks.{i}.0.op.weight" in sd:
            blocks.append(count)
            level, count = level + 1, 0
            continue
        width = _shape(sd, f"input_blocks.{i}.0.in_layers.2.weight")[0]
        if count == 0:
            mult.append(width // mc)
            if f"input_blocks.{i}.1.patch_embed.proj.weight" in sd:
                swin_levels.append(level)
                mask = f"input_blocks.{i}.1.blocks.1.attn_mask"
                if mask in sd and levels_image is None:  # (windows, w², w²) at the nominal size
                    windows, tokens = _shape(sd, mask)[:2]
                    levels_image = math.isqrt(windows) * math.isqrt(tokens) * 2 ** level
        count += 1
    blocks.append(count)
    table = _shape(sd, "middle_block.1.blocks.0.attn.relative_position_bias_table")
    windows = [math.isqrt(_shape(sd, k)[0]) for k in sd if k.endswith("relative_position_bias_table")]
    depth = len(_indices(sd, "middle_block.1.blocks."))
    return SwinUNetConfig(
        model_channels=mc, channel_mult=tuple(mult), num_res_blocks=tuple(blocks),
        latent_channels=out_channels, photo_channels=_shape(sd, "input_blocks.0.0.weight")[1] - out_channels,
        out_channels=out_channels, swin_levels=tuple(swin_levels),
        embed_dim=_shape(sd, "middle_block.1.patch_embed.proj.weight")[0], heads=table[1],
        window=(max(windows) + 1) // 2, depth=depth, mlp_hidden=_shape(sd, "middle_block.1.blocks.0.mlp.fc1.weight")[0],
        image_size=levels_image or SwinUNetConfig.image_size,
        conv_resample=any(k.endswith(".op.weight") for k in sd))


def autoencoder_config(sd: Mapping[str, torch.Tensor]) -> AutoencoderConfig:
    """The autoencoder's configuration from its tensor shapes."""
    ch, in_channels = _shape(sd, "encoder.conv_in.weight")[:2]
    levels = _indices(sd, "encoder.down.")
    return AutoencoderConfig(
        ch=ch, ch_mult=tuple(_shape(sd, f"encoder.down.{i}.block.0.conv1.weight")[0] // ch for i in levels),
        num_res_blocks=len(_indices(sd, "encoder.down.0.block.")),
        attention_levels=tuple(i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in sd),
        in_channels=in_channels, out_channels=_shape(sd, "decoder.conv_out.weight")[0],
        z_channels=_shape(sd, "encoder.conv_out.weight")[0], embed_dim=_shape(sd, "quant_conv.weight")[0],
        n_embed=_shape(sd, "quantize.embedding.weight")[0])


def build(family: str, config) -> nn.Module:
    """A freshly initialised network (build under ``torch.device('meta')`` to allocate nothing)."""
    return SwinUNet(config) if family == UNET else VQAutoencoder(config)


def network_tensors(sd: Mapping[str, torch.Tensor], family: str) -> StateDict:
    """``sd`` without the keys the loader skips (see the module doc)."""
    if family == UNET:
        return {k: v for k, v in sd.items() if not k.endswith(RECOMPUTED_BUFFERS)}
    return {k: v for k, v in sd.items() if not k.startswith(TRAINING_ONLY_PREFIX)}


def _checked(sd: Mapping[str, torch.Tensor], family: str, source: str):
    """(config, network tensors) after comparing them with the network built on the meta device."""
    name = "ResShift denoiser" if family == UNET else "ResShift VQ-f4 autoencoder"
    try:
        config = unet_config(sd) if family == UNET else autoencoder_config(sd)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build(family, config).state_dict().items()}
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as exc:
        raise ModelFileError(f"{source} looks like a {name} but its tensors do not fit one (problem at {exc}); "
                             "it is not supported") from exc
    tensors = network_tensors(sd, family)
    detail = kinds.layout_mismatch(expected, {k: tuple(v.shape) for k, v in tensors.items()})
    if detail:
        raise ModelFileError(f"{source} looks like a {name} but does not match one exactly ({detail}); "
                             "it may be damaged or another model")
    return config, tensors


def inspect(raw: object, source: str) -> Optional[kinds.ModelKind]:
    """The kind of a ResShift denoiser or autoencoder file (see :mod:`engine.models.kinds`)."""
    sd = _tensors(raw, source)
    family = family_of(sd) if sd else None
    if family is None:
        return None
    config, _ = _checked(sd, family, source)
    if family == UNET:
        return kinds.ModelKind(family=UNET, role=kinds.UPSCALER, image_size=config.image_size, scale=4,
                               summary="ResShift denoiser (Swin-UNet), ×4 in a few steps", licence=LICENCE,
                               config=config)
    return kinds.ModelKind(family=AUTOENCODER, role=kinds.AUTOENCODER, image_size=256, scale=1,
                           summary=f"ResShift VQ-f{config.factor} autoencoder", licence=LICENCE, config=config)


def load_network(path: Union[str, Path], family: str, device: torch.device, raw: object = None) -> nn.Module:
    """Read ``path`` safely (unless ``raw``, its contents, was read already) and return its network
    (float32, eval mode, on ``device``). Raises ModelFileError when the file is not that family's,
    naming what it is instead when known."""
    path = Path(path)
    if raw is None:
        raw = read_checkpoint(path)
    sd = _tensors(raw, path.name)
    found = family_of(sd) if sd else None
    if found != family:
        kinds.refuse_role(kinds.inspect_raw(raw, path.name), FAMILIES[family], path.name)
        raise ModelFileError(f"{path.name} is not a ResShift file; expected {EXPECTED}")
    del raw
    config, tensors = _checked(sd, family, path.name)
    with torch.device("meta"):
        net = build(family, config)
    net = net.to_empty(device=device)
    net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    rebuild_position_indices(net)  # buffers outside the state dict were left empty by to_empty
    return net.eval().requires_grad_(False)
