"""Model files of the scratch-detection network (a family module of :mod:`engine.models.kinds`).

The official file (``checkpoints/detection/FT_Epoch_latest.pt`` of Bringing Old Photos Back to
Life) is a training checkpoint: a dict whose ``model_state`` holds the network; the optimizer state
and the rest are ignored. A bare state dict (``torch.save(net.state_dict())``) is taken too. The
configuration (depth, convolutions per level, width, batch norm, anti-aliasing) is read from the
tensors and checked by building the network on the meta device. ``num_batches_tracked`` counters
(training bookkeeping, absent from files saved by old PyTorch versions) are neither required nor
used.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

import torch

from engine.detection.network import ScratchNetConfig, ScratchUNet
from engine.errors import ModelFileError
from engine.models import kinds

FAMILY = "bopb-scratch"
FAMILIES = {FAMILY: kinds.DETECTOR}
EXPECTED = ("the scratch detector of Bringing Old Photos Back to Life (FT_Epoch_latest.pt; keys like "
            "first.1.weight and down_path.0.block.1.weight)")
SUMMARY = "scratch detector of Bringing Old Photos Back to Life (U-Net, gray)"
LICENCE = "MIT (microsoft/Bringing-Old-Photos-Back-to-Life)"
_KEYS = ("first.1.weight", "down_sample.0.1.weight", "down_path.0.block.1.weight", "last.1.weight")
_COUNTER = "num_batches_tracked"


def state_dict_of(raw: object, source: str = "the file") -> Optional[dict[str, torch.Tensor]]:
    """The network's tensors in what the safe reader returned (None: not this family)."""
    from engine.models.checkpoint import unwrap_state_dict

    if isinstance(raw, Mapping) and isinstance(raw.get("model_state"), Mapping):
        raw = raw["model_state"]
    try:
        sd = unwrap_state_dict(raw, source)
    except ModelFileError:
        return None
    if not all(key in sd for key in _KEYS):
        return None
    return {k: v for k, v in sd.items() if not k.endswith(_COUNTER)}


def _levels(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for key in sd for m in [pattern.match(key)] if m})


def detect_config(sd: Mapping[str, torch.Tensor], source: str = "the file") -> ScratchNetConfig:
    """The configuration the tensors were made with (raises ModelFileError when they do not fit)."""
    try:
        width, in_channels = tuple(sd["first.1.weight"].shape[:2])
        wf = width.bit_length() - 1
        convs = sorted({int(m.group(1)) for key in sd
                        for m in [re.match(r"down_path\.0\.block\.(\d+)\.weight$", key)] if m})
        conv_weights = [i for i in convs if sd[f"down_path.0.block.{i}.weight"].ndim == 4]
        return ScratchNetConfig(
            in_channels=int(in_channels), out_channels=int(sd["last.1.weight"].shape[0]),
            depth=_levels(sd, "down_path."), conv_num=len(conv_weights), wf=wf,
            batch_norm="down_path.0.block.2.running_mean" in sd,
            antialiasing="down_sample.0.4.filt" in sd)
    except (KeyError, IndexError, ValueError) as exc:
        raise ModelFileError(f"{source} looks like the scratch detector but its tensors do not fit it "
                             f"(problem at {exc}); expected {EXPECTED}") from exc


def inspect(raw: object, source: str) -> Optional[kinds.ModelKind]:
    """The kind of a scratch-detector file, checked to build the network exactly; None when it is
    not one (see engine.models.kinds)."""
    sd = state_dict_of(raw, source)
    if sd is None:
        return None
    config = detect_config(sd, source)
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in ScratchUNet(config).state_dict().items()
                        if not k.endswith(_COUNTER)}
    except Exception as exc:  # noqa: BLE001 - any build failure means the file is not usable
        raise ModelFileError(f"{source}: the scratch detector it describes cannot be built ({exc})") from exc
    detail = kinds.layout_mismatch(expected, {k: tuple(v.shape) for k, v in sd.items()})
    if detail:
        raise ModelFileError(f"{source} looks like the scratch detector but its tensors do not fit it ({detail})")
    return kinds.ModelKind(family=FAMILY, role=kinds.DETECTOR, image_size=256, summary=SUMMARY, licence=LICENCE,
                           config=config)


def build_network(raw: object, source: str) -> ScratchUNet:
    """The network with the file's weights (on the CPU, in eval mode)."""
    kind = inspect(raw, source)
    if kind is None:
        raise ModelFileError(f"{source} is not {EXPECTED}")
    net = ScratchUNet(kind.config)
    missing, unexpected = net.load_state_dict(state_dict_of(raw, source), strict=False)
    if unexpected or any(not key.endswith(_COUNTER) for key in missing):
        raise ModelFileError(f"{source}: the weights do not load ({(unexpected or missing)[:3]})")
    return net.eval()
