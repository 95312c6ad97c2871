"""Safe checkpoint loading and family/configuration detection from tensor names and shapes.

Nothing here unpickles code: PyTorch files go through ``torch.load(weights_only=True)``,
safetensors files through safetensors. Which of the two a file is comes from its first bytes, not
its name (a renamed file loads all the same). A user can drop in any supported file; what model it
is comes from its tensors:

- ``adm``: keys like ``input_blocks.0.0.weight`` and ``output_blocks.*`` (guided-diffusion UNet);
- ``adm-classifier``: ADM encoder + ``out.2.positional_embedding`` (attention pooling head);
- ``ddpm``: keys like ``conv_in.weight``, ``temb.dense.0.weight``, ``down.0.block.0.*`` (ddim Model).

Not recoverable from shapes, hence assumed: ``num_head_channels`` (64, as in every official ADM
file; pass another value to :func:`detect_config`), and the native ``image_size`` of UNets (256:
the networks are fully convolutional, the weights do not say). The classifier's image size *is*
recovered from its positional embedding.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from engine.errors import ModelFileError
from engine.models import kinds
from engine.models.catalog import require_model_file

StateDict = Dict[str, torch.Tensor]

EXPECTED = ("expected an ADM UNet or classifier (keys like input_blocks.0.0.weight) "
            "or a DDPM Model (keys like conv_in.weight and temb.dense.0.weight)")
_WRAPPER_KEYS = ("state_dict", "model", "ema", "ema_model", "model_ema", "module", "net", "params")
_PREFIXES = ("module.", "model.", "ema_model.", "ema.")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build one of our networks. Attention is given as level indices
    (0 = full resolution), so a configuration does not depend on the window size."""

    family: str  # "adm" | "adm-classifier" | "ddpm"
    model_channels: int
    channel_mult: Tuple[int, ...]
    num_res_blocks: int
    attention_levels: Tuple[int, ...]
    image_size: int = 256
    in_channels: int = 3
    out_channels: int = 3  # 6 = learned sigma (ADM); number of classes for the classifier
    num_head_channels: int = 64  # ADM only; not recoverable from shapes
    num_classes: Optional[int] = None  # class-conditional ADM UNet (label_emb rows)
    use_scale_shift_norm: bool = True  # ADM only
    resblock_updown: bool = True  # ADM only
    conv_resample: bool = True  # ADM Downsample/Upsample conv, DDPM resamp_with_conv

    @property
    def learn_sigma(self) -> bool:
        return self.family == "adm" and self.out_channels == 2 * self.in_channels

    @property
    def class_cond(self) -> bool:
        return self.num_classes is not None

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** (len(self.channel_mult) - 1)

    def attention_resolutions(self) -> Tuple[int, ...]:
        """The official notation: feature-map sides (px) with attention at ``image_size``."""
        return tuple(self.image_size // 2 ** level for level in self.attention_levels)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------- reading files


def sidecar_path(model_path: Union[str, Path]) -> Path:
    """``MODEL.pt`` -> ``MODEL.json``: the metadata of a model we trained (its native size...)."""
    return Path(model_path).with_suffix(".json")


def load_state_dict(path: Union[str, Path]) -> StateDict:
    """Read a checkpoint file into a flat {name: tensor} dict (on the CPU), unwrapping
    ``{"state_dict": ...}``-style containers and ``module.``/``model.`` prefixes.

    Raises ModelFileError for anything that is not a readable dict of tensors."""
    path = Path(path)
    return unwrap_state_dict(read_checkpoint(path), source=path.name)


def read_checkpoint(path: Union[str, Path]) -> object:
    """What a checkpoint file holds, read safely (``weights_only=True`` or safetensors; which of
    the two from the file's first bytes): tensors in plain containers, on the CPU, not unwrapped.
    Raises ModelFileError for a file that cannot be read so."""
    path = require_model_file(Path(path))
    try:
        if checkpoint_format(path) == SAFETENSORS:
            from safetensors.torch import load_file

            raw = load_file(str(path), device="cpu")
        else:
            raw = _load_tensors_only(path)
    except ModelFileError:
        raise
    except Exception as exc:  # truncated zips, text files, ...
        raise ModelFileError(
            f"{path.name} could not be read as a model checkpoint ({type(exc).__name__}: "
            f"{_first_line(exc)}). It may be truncated, not a PyTorch/safetensors file, or contain "
            f"code, which is never loaded") from exc
    return raw


#: How files that are often picked by mistake begin, and what to call them.
_NOT_CHECKPOINTS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"II*\x00", "a TIFF image"),
                    (b"MM\x00*", "a TIFF image"), (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"))
SAFETENSORS, TORCH = "safetensors", "torch"


def _is_safetensors(head: bytes) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then the JSON header. (A PyTorch
    file never has a '{' there: it is a zip's compression method or inside torch's magic number.)"""
    return head[8:9] == b"{"


def checkpoint_format(path: Path) -> str:
    """:data:`SAFETENSORS` or :data:`TORCH`, from the file's first bytes whatever its name.
    ``torch.save`` writes a zip archive or, in the legacy format, a pickle of protocol 2 or later
    (first byte 0x80). Any other file is refused saying what it is, rather than read as a pickle
    (which would call a photo "code")."""
    with open(path, "rb") as f:
        head = f.read(16)
    if _is_safetensors(head):
        return SAFETENSORS
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return TORCH
    kind = next((name for magic, name in _NOT_CHECKPOINTS if head.startswith(magic)), None)
    if not head:
        kind = "empty (0 bytes)"
    elif kind is None and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        kind = "a text file"
    raise ModelFileError(f"{path.name} is {kind or 'not a PyTorch file'}, not a model checkpoint; "
                         f"a model is a PyTorch (.pt, .ckpt, .pth) or safetensors file")


def load_plain_pickle(path: Union[str, Path], *, mmap: bool = False) -> object:
    """``torch.load`` of a ``.pt/.ckpt`` file with ``weights_only=True``: tensors and plain
    containers only. A file holding anything else (code, other Python objects) raises
    ModelFileError saying it was not loaded, never PyTorch's advice to load it without that guard;
    a file that is not a PyTorch file at all (a photo, text, an empty file) is refused as such."""
    path = Path(path)
    if checkpoint_format(path) != TORCH:
        raise ModelFileError(f"{path.name} is a safetensors file, not a PyTorch file")
    return _load_tensors_only(path, mmap=mmap)


def _load_tensors_only(path: Path, *, mmap: bool = False) -> object:
    try:
        if str(path).endswith(".safetensors"):  # torch.load would hand this path to safetensors
            with open(path, "rb") as f:
                return torch.load(f, map_location="cpu", weights_only=True)
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(f"{path.name} contains code or Python objects that are not plain tensors, "
                             "so it was not loaded (for your safety)") from exc


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error, shortened to its last whole sentence within ``limit``."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else "no details"
    if len(line) <= limit:
        return line
    end = line.rfind(". ", 0, limit)
    return line[:end + 1] if end > 0 else line[:limit] + "…"


def unwrap_state_dict(raw: object, source: str = "checkpoint") -> StateDict:
    """Find the tensor dict inside common wrappers and strip DataParallel/Lightning prefixes."""
    for _ in range(4):
        if isinstance(raw, Mapping) and not _is_tensor_dict(raw):
            inner = next((raw[k] for k in _WRAPPER_KEYS if k in raw and isinstance(raw[k], Mapping)), None)
            if inner is None:
                break
            raw = inner
    if not isinstance(raw, Mapping) or not _is_tensor_dict(raw):
        raise ModelFileError(f"{source} is not a supported diffusion checkpoint: it holds no tensor dict; {EXPECTED}")
    sd = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _is_tensor_dict(d: Mapping) -> bool:
    return len(d) > 0 and sum(isinstance(v, torch.Tensor) for v in d.values()) >= max(1, len(d) // 2)


# ---------------------------------------------------------------- detection


def _indices(sd: Mapping[str, torch.Tensor], prefix: str) -> list:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in sd for m in [pat.match(k)] if m})


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> Tuple[int, ...]:
    if key not in sd:
        raise KeyError(key)
    return tuple(sd[key].shape)


#: The families read here and their roles (see engine.models.kinds).
FAMILIES = {"adm": kinds.DIFFUSION, "ddpm": kinds.DIFFUSION, "adm-classifier": kinds.CLASSIFIER}


def inspect(raw: object, source: str) -> Optional["kinds.ModelKind"]:
    """The kind of a checkpoint when it is an ADM UNet, ADM classifier or DDPM Model (see
    engine.models.kinds), checked to build that network exactly (on the meta device: no memory);
    None when it is none of them."""
    try:
        sd = unwrap_state_dict(raw, source)
        family = detect_family(sd, source)
    except ModelFileError:
        return None
    config = detect_config(sd, source=source)
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    except Exception as exc:  # noqa: BLE001 - any build failure means the file is not usable
        raise ModelFileError(f"{source}: the detected {family} network cannot be built ({exc})") from exc
    detail = kinds.layout_mismatch(expected, {k: tuple(v.shape) for k, v in sd.items()})
    if detail:
        raise ModelFileError(f"{source} looks like {a_family(family)} model but its tensors do not fit it "
                             f"({detail}); it is not supported")
    names = {"adm": "ADM UNet", "ddpm": "DDPM UNet", "adm-classifier": "ADM classifier"}
    return kinds.ModelKind(family=family, role=FAMILIES[family], image_size=config.image_size,
                           num_classes=config.num_classes, summary=f"{names[family]}, {config.image_size} px",
                           config=config)


def a_family(family: str) -> str:
    """The family for a sentence: "an ADM", "a DDPM", "an ADM classifier"."""
    name = family.upper().replace("-CLASSIFIER", " classifier")
    return f"{'an' if name.startswith('A') else 'a'} {name}"


def detect_family(sd: Mapping[str, torch.Tensor], source: str = "the file") -> str:
    if "input_blocks.0.0.weight" in sd and "time_embed.0.weight" in sd:
        return "adm-classifier" if "out.2.positional_embedding" in sd else "adm"
    if "conv_in.weight" in sd and "temb.dense.0.weight" in sd and "down.0.block.0.conv1.weight" in sd:
        return "ddpm"
    raise ModelFileError(f"{source} is not a supported diffusion checkpoint: {EXPECTED}. "
                         f"First keys found: {', '.join(list(sd)[:3]) or 'none'}")


def detect_config(sd: Mapping[str, torch.Tensor], *, num_head_channels: int = 64,
                  image_size: int = 256, source: str = "the file") -> ModelConfig:
    """Infer family and configuration from tensor names and shapes (works on meta tensors).

    ``num_head_channels`` and the UNets' ``image_size`` are not in the shapes (see module doc)."""
    family = detect_family(sd, source)
    try:
        if family == "ddpm":
            return _detect_ddpm(sd, image_size)
        return _detect_adm(sd, family, num_head_channels, image_size)
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as exc:
        raise ModelFileError(f"{source} looks like {a_family(family)} model but its tensors do not fit that "
                             f"architecture (problem at {exc}); {EXPECTED}") from exc


def _detect_ddpm(sd: Mapping[str, torch.Tensor], image_size: int) -> ModelConfig:
    ch, in_ch = _shape(sd, "conv_in.weight")[:2]
    levels = _indices(sd, "down.")
    mult = tuple(_shape(sd, f"down.{i}.block.0.conv1.weight")[0] // ch for i in levels)
    return ModelConfig(
        family="ddpm", model_channels=ch, channel_mult=mult,
        num_res_blocks=len(_indices(sd, "down.0.block.")),
        attention_levels=tuple(i for i in levels if f"down.{i}.attn.0.q.weight" in sd),
        image_size=image_size, in_channels=in_ch, out_channels=_shape(sd, "conv_out.weight")[0],
        num_head_channels=0, use_scale_shift_norm=False, resblock_updown=False,
        conv_resample="down.0.downsample.conv.weight" in sd)


def _is_resampler(sd: Mapping[str, torch.Tensor], prefix: str) -> bool:
    """An input block that only resamples: conv Downsample ('op'), parameter-free pooling (no keys)."""
    return f"{prefix}op.weight" in sd or not any(k.startswith(prefix) for k in sd)


def _detect_adm(sd: Mapping[str, torch.Tensor], family: str, num_head_channels: int, image_size: int) -> ModelConfig:
    mc, in_ch = _shape(sd, "input_blocks.0.0.weight")[:2]
    n_in = max(_indices(sd, "input_blocks.")) + 1
    first = next(i for i in range(1, n_in) if f"input_blocks.{i}.0.in_layers.2.weight" in sd)
    ref_out = _shape(sd, f"input_blocks.{first}.0.out_layers.3.weight")[0]
    scale_shift = _shape(sd, f"input_blocks.{first}.0.emb_layers.1.weight")[0] == 2 * ref_out
    num_classes = _shape(sd, "label_emb.weight")[0] if "label_emb.weight" in sd else None
    resblock_updown = False
    nrb = None
    if family == "adm":  # the first output block with an up-sampler closes the lowest level
        for j in _indices(sd, "output_blocks."):
            subs = _indices(sd, f"output_blocks.{j}.")
            extra = [s for s in subs if s >= 1 and f"output_blocks.{j}.{s}.qkv.weight" not in sd]
            if extra:
                nrb = j
                resblock_updown = f"output_blocks.{j}.{extra[0]}.in_layers.2.weight" in sd
                break
    if nrb is None:  # parameter-free resampling, or a classifier: look at the input side
        runs = _attention_runs(sd, n_in)
        down = next((i for i in range(1, n_in) if _is_resampler(sd, f"input_blocks.{i}.")), None)
        nrb = down - 1 if down is not None else (min(runs) if runs else None)
        if nrb is None:
            raise ValueError("number of res blocks per level")
    if family == "adm-classifier" and not any(f"input_blocks.{i}.0.op.weight" in sd for i in range(n_in)):
        resblock_updown = not any(_is_resampler(sd, f"input_blocks.{i}.") for i in range(1, n_in))
    levels = n_in // (nrb + 1)
    if levels * (nrb + 1) != n_in:
        raise ValueError(f"{n_in} input blocks do not divide into levels of {nrb + 1}")
    mult, attn = [], []
    for level in range(levels):
        i = 1 + level * (nrb + 1)
        mult.append(_shape(sd, f"input_blocks.{i}.0.out_layers.3.weight")[0] // mc)
        if f"input_blocks.{i}.1.qkv.weight" in sd:
            attn.append(level)
    conv_resample = any(f"input_blocks.{i}.0.op.weight" in sd for i in range(n_in)) or resblock_updown
    if family == "adm-classifier":
        embed_dim, tokens = _shape(sd, "out.2.positional_embedding")
        side = math.isqrt(tokens - 1)
        if side * side != tokens - 1:
            raise ValueError("out.2.positional_embedding")
        image_size = side * 2 ** (levels - 1)
        out_ch = _shape(sd, "out.2.c_proj.weight")[0]
    else:
        out_ch = _shape(sd, "out.2.weight")[0]
    return ModelConfig(
        family=family, model_channels=mc, channel_mult=tuple(mult), num_res_blocks=nrb,
        attention_levels=tuple(attn), image_size=image_size, in_channels=in_ch, out_channels=out_ch,
        num_head_channels=num_head_channels, num_classes=num_classes, use_scale_shift_norm=scale_shift,
        resblock_updown=resblock_updown, conv_resample=conv_resample)


def _attention_runs(sd: Mapping[str, torch.Tensor], n_in: int) -> list:
    """Lengths of runs of consecutive input blocks carrying attention (each run = one level)."""
    runs, run = [], 0
    for i in range(1, n_in):
        if f"input_blocks.{i}.1.qkv.weight" in sd:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    return runs + ([run] if run else [])


# ---------------------------------------------------------------- building and loading


def build_model(config: ModelConfig) -> nn.Module:
    """A network with freshly initialised weights for ``config`` (use ``torch.device('meta')``
    as a context to build without allocating)."""
    from engine.models.adm_classifier import ADMClassifier
    from engine.models.adm_unet import ADMUNet
    from engine.models.ddpm_unet import DDPMUNet

    c = config
    if c.family == "ddpm":
        return DDPMUNet(ch=c.model_channels, ch_mult=c.channel_mult, num_res_blocks=c.num_res_blocks,
                        attention_levels=c.attention_levels, in_channels=c.in_channels, out_ch=c.out_channels,
                        resamp_with_conv=c.conv_resample)
    common = dict(model_channels=c.model_channels, channel_mult=c.channel_mult, num_res_blocks=c.num_res_blocks,
                  attention_levels=c.attention_levels, num_head_channels=c.num_head_channels,
                  in_channels=c.in_channels, use_scale_shift_norm=c.use_scale_shift_norm,
                  resblock_updown=c.resblock_updown, conv_resample=c.conv_resample)
    if c.family == "adm":
        return ADMUNet(out_channels=c.out_channels, num_classes=c.num_classes, **common)
    if c.family == "adm-classifier":
        return ADMClassifier(image_size=c.image_size, num_classes=c.out_channels, **common)
    raise ModelFileError(f"unknown model family {c.family!r}")


def model_from_state_dict(sd: Mapping[str, torch.Tensor], *, device: Optional[torch.device] = None,
                          source: str = "checkpoint", num_head_channels: int = 64) -> Tuple[nn.Module, ModelConfig]:
    """Detect, build on the meta device, load strictly (float32), move to ``device``, eval mode."""
    config = detect_config(sd, num_head_channels=num_head_channels, source=source)
    try:
        with torch.device("meta"):
            model = build_model(config)
    except ValueError as exc:  # e.g. channels that do not split into 64-channel heads
        raise ModelFileError(f"{source}: detected {config.family} configuration cannot be built ({exc})") from exc
    detail = kinds.layout_mismatch({k: tuple(v.shape) for k, v in model.state_dict().items()},
                                   {k: tuple(v.shape) for k, v in sd.items()})
    if detail:
        raise ModelFileError(f"{source} looks like {a_family(config.family)} model but does not match it exactly "
                             f"({detail}); {EXPECTED}")
    model = model.to_empty(device=device or torch.device("cpu"))
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.eval().requires_grad_(False), config


def load_model(path: Union[str, Path], *, device: Optional[torch.device] = None,
               num_head_channels: int = 64) -> Tuple[nn.Module, ModelConfig]:
    """Load a checkpoint file safely and return (network in eval mode on ``device``, config)."""
    sd = load_state_dict(path)
    return model_from_state_dict(sd, device=device, source=Path(path).name, num_head_channels=num_head_channels)
