"""Stage-1 clean-up networks, read through spandrel (the loader chaiNNer, ComfyUI and Forge use).

The architectures are spandrel's; nothing here hand-writes a network. The file is always read by
:func:`engine.models.checkpoint.read_checkpoint` (``weights_only=True`` or safetensors: no code
runs); the tensors are canonicalized as spandrel does and given to
``spandrel.ModelLoader().load_from_state_dict``. A path is never handed to spandrel: its own
``.pt`` path runs TorchScript.

This is the ``spandrel`` family module of :mod:`engine.models.kinds` (``FAMILIES``, ``EXPECTED``,
``inspect``); it is asked last, because spandrel recognises hundreds of layouts. Only
image-to-image networks that take a whole photo qualify: inpainting networks (they need a mask),
face networks (aligned face crops only) and networks whose channels differ are refused, and so
are the non-commercial architectures of ``spandrel_extra_arches``, which the app does not install.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from engine.errors import ModelFileError
from engine.models import kinds

FAMILY = "spandrel"
FAMILIES = {FAMILY: kinds.CLEANUP}
EXPECTED = ("an image-to-image restoration network that spandrel reads (e.g. SCUNet, BSRNet/ESRGAN, "
            "Real-ESRGAN, SwinIR, FBCNN, FFTformer)")

#: The licence of each architecture's code, from the LICENSE file spandrel keeps beside it
#: (spandrel/architectures/<id>/__arch/LICENSE in chaiNNer-org/spandrel 0.4.2). The weights of a
#: file have their own terms (the catalog names them for its models).
ARCHITECTURE_LICENCES = {
    "ATD": "Apache-2.0", "AuraSR": "CC BY-SA 4.0", "CRAFT": "Apache-2.0", "Compact": "BSD-3-Clause",
    "DAT": "Apache-2.0", "DCTLSA": "Apache-2.0", "DITN": "Apache-2.0", "DRCT": "MIT", "DRUNet": "MIT",
    "DnCNN": "MIT", "ESRGAN": "Apache-2.0", "FBCNN": "Apache-2.0", "FDAT": "MIT", "FFTformer": "MIT",
    "GFPGAN": "Apache-2.0", "GRL": "MIT", "HAT": "MIT", "HVICIDNet": "MIT", "IPT": "Apache-2.0", "KBNet": "MIT",
    "LaMa": "Apache-2.0", "MMRealSR": "BSD-3-Clause", "MixDehazeNet": "MIT", "MoESR": "MIT", "MoSR": "MIT",
    "NAFNet": "MIT", "OmniSR": "Apache-2.0", "PLKSR": "MIT", "RCAN": "MIT", "RGT": "Apache-2.0",
    "RealCUGAN": "MIT", "RestoreFormer": "Apache-2.0", "RetinexFormer": "MIT", "SAFMN": "Apache-2.0",
    "SAFMNBCIE": "Apache-2.0", "SCUNet": "Apache-2.0", "SPAN": "Apache-2.0", "SeemoRe": "Apache-2.0",
    "SwiftSRGAN": "CC0-1.0", "Swin2SR": "Apache-2.0", "SwinIR": "Apache-2.0", "Uformer": "MIT",
}

#: Architectures of ``spandrel_extra_arches`` (non-commercial licences, not installed), each known
#: by tensor names only it has. Checked before spandrel's own registry, which could mistake some
#: of them for a look-alike (SRFormer for SwinIR).
EXTRA_ARCHITECTURES = {
    "AdaCode": ("weight_predictor.blocks.0.swin_blks.0.residual_group.blocks.0.norm1.weight",),
    "CodeFormer": ("position_emb", "idx_pred_layer.1.weight"),
    "DDColor": ("refine_net.0.0.weight_orig", "encoder.arch.downsample_layers.0.0.weight"),
    "FeMaSR": ("multiscale_encoder.in_conv.weight", "quantize_group.0.embedding.weight"),
    "MAT": ("synthesis.first_stage.conv_first.conv.resample_filter",),
    "MIRNet2": ("body.0.body.0.dau_top.gcnet.conv_mask.weight",),
    "MPRNet": ("shallow_feat1.0.weight", "stage1_encoder.encoder_level1.0.CA.conv_du.0.weight"),
    "Restormer": ("patch_embed.proj.weight", "encoder_level1.0.attn.temperature"),
    "SRFormer": ("layers.0.residual_group.blocks.0.attn.aligned_relative_position_index",),
}


def canonical_tensors(raw: object) -> Optional[dict[str, Any]]:
    """The state dict inside ``raw`` as spandrel canonicalizes it (known wrapper keys such as
    ``params_ema``, a single nested dict, ``module.``/``netG.`` prefixes), or None when ``raw`` holds
    no dict of tensors."""
    from spandrel import canonicalize_state_dict

    if not isinstance(raw, Mapping):
        return None
    sd = canonicalize_state_dict(dict(raw))
    if not isinstance(sd, Mapping) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        return None
    return dict(sd)


def _extra_architecture(sd: Mapping[str, Any]) -> Optional[str]:
    for name, keys in EXTRA_ARCHITECTURES.items():
        if all(k in sd or f"model.{k}" in sd for k in keys):
            return name
    return None


def describe(descriptor: Any, source: str) -> kinds.ModelKind:
    """The ModelKind of a spandrel ModelDescriptor, or ModelFileError when it is not a clean-up
    network the app can run on a whole photo."""
    from spandrel import MaskedImageModelDescriptor

    arch = descriptor.architecture
    name, scale = arch.name, int(descriptor.scale)
    if isinstance(descriptor, MaskedImageModelDescriptor) or descriptor.purpose == "Inpainting":
        raise ModelFileError(f"{source} is a {name} inpainting network: it needs a mask of its own. The app fills "
                             "masked areas with its diffusion model; a clean-up model must be an image-to-image "
                             "restoration network")
    if descriptor.purpose == "FaceSR":
        raise ModelFileError(f"{source} is a {name} face restoration network: it restores aligned face crops, "
                             "not whole photos, so it cannot be a clean-up model")
    channels = (int(descriptor.input_channels), int(descriptor.output_channels))
    if channels[0] != channels[1] or channels[0] not in (1, 3):
        raise ModelFileError(f"{source} is a {name} network with {channels[0]} input and {channels[1]} output "
                             "channels; a clean-up model takes and gives RGB (or gray) photos")
    if scale < 1:
        raise ModelFileError(f"{source} is a {name} network with scale {scale}; a clean-up model keeps or "
                             "enlarges the photo")
    what = "restoration" if descriptor.purpose == "Restoration" else "super-resolution"
    summary = f"{name}, ×{scale}" + (", gray" if channels[0] == 1 else "")
    config = {"architecture": str(arch.id), "scale": scale, "channels": channels[0], "purpose": what,
              "tags": list(descriptor.tags)}
    return kinds.ModelKind(family=FAMILY, role=kinds.CLEANUP, image_size=tile_hint(descriptor), scale=scale,
                           summary=summary, licence=ARCHITECTURE_LICENCES.get(str(arch.id), ""), config=config)


def read_descriptor(raw: object, source: str, device: torch.device | str = "meta") -> Optional[Any]:
    """spandrel's ModelDescriptor for an already-read checkpoint (on the meta device by default:
    shapes checked, nothing allocated), None when the file is no spandrel network. ModelFileError
    for an architecture of spandrel_extra_arches or for tensors that do not fit their network."""
    from spandrel import ModelLoader, UnsupportedModelError

    sd = canonical_tensors(raw)
    if sd is None:
        return None
    extra = _extra_architecture(sd)
    if extra is not None:
        raise ModelFileError(f"{source} is a {extra} network. spandrel keeps {extra} in spandrel_extra_arches, "
                             "the architectures under non-commercial licences, which this app does not install")
    try:
        return ModelLoader(device=device).load_from_state_dict(sd)
    except UnsupportedModelError:
        return None
    except Exception as exc:  # noqa: BLE001 - spandrel detected a layout whose tensors do not fit it
        raise ModelFileError(f"{source} looks like a spandrel network but its tensors do not fit it "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no details'}); "
                             "it may be damaged or a variant spandrel does not support") from exc


def inspect(raw: object, source: str) -> Optional[kinds.ModelKind]:
    """The kind of a checkpoint when spandrel reads it as a clean-up network (see module doc);
    None when it is not a spandrel network; ModelFileError when it is one the app cannot use."""
    descriptor = read_descriptor(raw, source)
    return None if descriptor is None else describe(descriptor, source)


# ------------------------------------------------------------------------------ tiles

#: Largest input tile side by output scale; the runner takes smaller tiles when free memory says so.
TILE_BY_SCALE = {1: 512, 2: 384}
LARGE_SCALE_TILE = 256
#: Rough device bytes per input pixel of a tile at scale 1 in fp32 (feature maps of 64 channels,
#: a few alive at once). Only the memory plan uses it; an out-of-memory tile is split anyway.
BYTES_PER_PIXEL_FP32 = 4 * 64 * 8


def tile_hint(descriptor: Any) -> int:
    """The input tile side for a network: large for ×1 networks, smaller for upscalers (their
    output is scale² bigger), whole photos up to 2048 px for networks that tile internally."""
    from spandrel import ModelTiling

    if descriptor.tiling == ModelTiling.INTERNAL:
        return 2048
    return TILE_BY_SCALE.get(int(descriptor.scale), LARGE_SCALE_TILE)


def tile_context(descriptor: Any) -> tuple[int, int]:
    """(overlap, margin) in input pixels. Networks that see far (transformers, U-Nets whose tiling
    spandrel discourages) get a wider overlap and a margin of zero-weight pixels at shared edges."""
    from spandrel import ModelTiling

    if descriptor.tiling == ModelTiling.SUPPORTED:
        return 32, 8
    return 64, 16


@dataclass(frozen=True)
class LoadedNetwork:
    """A spandrel network ready to run on ``device``: the descriptor and what the tiles need."""

    descriptor: Any
    kind: kinds.ModelKind
    name: str  # the model id or file name, for the report
    device: torch.device
    dtype: torch.dtype

    @property
    def channels(self) -> int:
        return int(self.descriptor.input_channels)

    def bytes_per_pixel(self) -> float:
        per_value = 0.5 if self.dtype in (torch.float16, torch.bfloat16) else 1.0
        return BYTES_PER_PIXEL_FP32 * per_value * max(1.0, self.kind.scale ** 2 / 2)

    def multiple(self) -> int:
        req = self.descriptor.size_requirements
        return max(1, int(getattr(req, "multiple_of", 1) or 1))

    def minimum(self) -> int:
        return max(0, int(getattr(self.descriptor.size_requirements, "minimum", 0) or 0))

    @torch.inference_mode()
    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) float32 [0, 1] on the device -> (B, 3, h·s, w·s) float32 [0, 1]. A gray
        network restores each RGB channel as a gray photo."""
        b, c, h, w = tiles.shape
        x = tiles.reshape(b * c, 1, h, w) if self.channels == 1 else tiles
        out = self.descriptor(x.to(self.dtype)).float()
        if self.channels == 1:
            out = out.reshape(b, c, out.shape[-2], out.shape[-1])
        return out.clamp_(0.0, 1.0)


def pick_dtype(descriptor: Any, precision: str, device: torch.device) -> torch.dtype:
    """The network's dtype: the run's 16-bit precision where spandrel says the architecture supports
    it and the device is a GPU, else float32 (16-bit convolutions on CPUs are rarely faster)."""
    if device.type == "cpu":
        return torch.float32
    if precision == "fp16" and descriptor.supports_half:
        return torch.float16
    if precision == "bf16" and descriptor.supports_bfloat16:
        return torch.bfloat16
    return torch.float32


def read_model_file(spec: str) -> tuple[Path, object]:
    """(file, what it holds, read safely) for a catalog/imported id or a file."""
    from engine.models.catalog import resolve_model_file
    from engine.models.checkpoint import read_checkpoint

    path = Path(resolve_model_file(spec))
    return path, read_checkpoint(path)


def load_network(spec: str, *, device: torch.device, precision: str = "fp32", raw: object = None) -> LoadedNetwork:
    """A clean-up network from a catalog/imported id or a file (``raw``: the file already read by
    :func:`read_model_file`). A file of another kind (a diffusion model, a classifier) is refused
    naming what it is and what was expected."""
    from engine.models.catalog import resolve_model_file

    if raw is None:
        path, raw = read_model_file(spec)
    else:
        path = Path(resolve_model_file(spec))
    descriptor = read_descriptor(raw, path.name, device="cpu")
    if descriptor is None:  # not spandrel's: say what it is (kinds raises when nobody claims it)
        kind = kinds.inspect_raw(raw, path.name)
        kinds.refuse_role(kind, kinds.CLEANUP, path.name, advice_for(kind.role))
        raise ModelFileError(f"{path.name} is not {kinds.ROLE_NAMES[kinds.CLEANUP]}; expected {EXPECTED}")
    del raw
    kind = describe(descriptor, path.name)
    dtype = pick_dtype(descriptor, precision, device)
    descriptor.model.to(device=device, dtype=dtype)
    descriptor.model.eval().requires_grad_(False)
    return LoadedNetwork(descriptor, kind, str(spec) if not Path(str(spec)).is_file() else path.name, device, dtype)


#: Where a model of another role goes instead, for a refusal.
ADVICE = {kinds.DIFFUSION: "Choose it as the diffusion model (the Model setting, --model) instead",
          kinds.CLASSIFIER: "It guides a class-conditional model: choose it as the Classifier (Advanced, --classifier)",
          kinds.CLEANUP: "Choose it under Clean up unknown damage (--cleanup) instead",
          kinds.UPSCALER: "Upscale with it as the fast upscaler (Fast (4 steps) under Upscale, --upscaler) instead"}


def advice_for(role: str) -> str:
    return ADVICE.get(role, "Import it in Models to use it for what it does")


def output_scale(network_scale: int, wanted: int) -> int:
    """The scale stage 1 delivers for a photo restored ×``wanted``: the network's own scale when it
    divides ``wanted``; a network bigger than asked is area-downsampled to ``wanted``; otherwise the
    largest common factor (a ×1 network with an upscale runs at 1×, stage 2 upscales the rest)."""
    if network_scale >= wanted:
        return wanted
    return math.gcd(network_scale, wanted)
