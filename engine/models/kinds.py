"""What a model file is for, whatever its network: the one description of a checkpoint that the
store, the CLI and the app share.

The app loads several kinds of networks: diffusion priors (ADM, DDPM), the ADM classifier for
guidance, stage-1 clean-up networks (through spandrel), the fast upscaler (ResShift and its
autoencoder) and the damage detector. Each family's module offers

- ``FAMILIES``: ``{family: role}`` for the families it reads (a family is what the catalog and the
  registry store as a model's ``architecture``);
- ``inspect(raw, source) -> Optional[ModelKind]``: ``raw`` is what the safe reader returned for
  the file (a dict of tensors, maybe nested in training state); ``None`` means "not one of mine";
  a file that is one of its families but broken raises :class:`~engine.errors.ModelFileError`
  saying what is wrong.

:data:`FAMILY_MODULES` lists those modules in the order they are asked (the most specific first;
spandrel, which recognises hundreds of layouts, last). A file no family claims is refused with a
message naming every kind the app takes. Nothing here unpickles code: files are read by
:func:`engine.models.checkpoint.read_checkpoint` (``weights_only=True`` or safetensors).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from engine.errors import ModelFileError

#: Roles, and how a sentence names them.
DIFFUSION, CLASSIFIER, CLEANUP, UPSCALER, AUTOENCODER, DETECTOR = (
    "diffusion", "classifier", "cleanup", "upscaler", "autoencoder", "detector")
ROLE_NAMES = {
    DIFFUSION: "a diffusion model (the prior that restores)",
    CLASSIFIER: "a classifier for guidance",
    CLEANUP: "a clean-up network (stage 1: removes damage nobody can name)",
    UPSCALER: "a fast upscaler",
    AUTOENCODER: "an autoencoder (part of the fast upscaler)",
    DETECTOR: "a damage detector",
}

#: The modules that read model files, asked in this order (see the module doc).
FAMILY_MODULES = (
    "engine.resshift.files",  # ResShift denoiser and VQ-f4 autoencoder (before ADM: the denoiser has ADM's key names)
    "engine.models.checkpoint",  # ADM, ADM classifier, DDPM
    "engine.detection.network_file",  # the scratch detector of Bringing Old Photos Back to Life
    "engine.cleanup.networks",  # spandrel's image-to-image networks (stage-1 clean-up); stays last
)


@dataclass(frozen=True)
class ModelKind:
    """What a checkpoint is. ``family`` is stored as the model's ``architecture``."""

    family: str
    role: str
    image_size: int = 256  # the window a diffusion model works on; the tile hint of other networks
    num_classes: Optional[int] = None  # class-conditional ADM
    scale: int = 1  # output pixels per input pixel (upscaling networks)
    summary: str = ""  # one line for people: "SCUNet, ×1", "ADM UNet, 256 px"
    licence: str = ""  # the architecture's licence where the family knows it (spandrel does)
    config: Any = None  # the family's own configuration (a ModelConfig for diffusion networks)

    @property
    def class_cond(self) -> bool:
        return self.num_classes is not None


@lru_cache(maxsize=None)
def _modules() -> tuple[Any, ...]:
    return tuple(importlib.import_module(name) for name in FAMILY_MODULES)


def family_roles() -> dict[str, str]:
    """``{family: role}`` over every family the app reads."""
    roles: dict[str, str] = {}
    for module in _modules():
        roles.update(module.FAMILIES)
    return roles


def role_of(family: str) -> str:
    """The role of a catalog/registry ``architecture``; unknown families count as diffusion models
    (imports made before the roles existed were all diffusion models or ADM classifiers)."""
    return family_roles().get(family, DIFFUSION)


def expected_kinds() -> str:
    """Every kind of file the app takes, for a refusal."""
    phrases = (getattr(m, "EXPECTED", "").removeprefix("expected ") for m in _modules())
    return "; or ".join(p for p in phrases if p)


def inspect_raw(raw: object, source: str) -> ModelKind:
    """The kind of an already-read checkpoint. Raises ModelFileError when no family claims it."""
    for module in _modules():
        kind = module.inspect(raw, source)
        if kind is not None:
            return kind
    raise ModelFileError(f"{source} is not a model the app can use; expected {expected_kinds()}")


def inspect_file(path: Union[str, Path]) -> ModelKind:
    """Read ``path`` safely and say what it is (raises ModelFileError, also for weights that hold
    NaN or infinite values: such a file restores nothing)."""
    from engine.models.checkpoint import read_checkpoint

    path = Path(path)
    raw = read_checkpoint(path)
    broken = non_finite_message(non_finite_tensors(raw), path.name)
    if broken:
        raise ModelFileError(broken)
    return inspect_raw(raw, path.name)


def non_finite_tensors(raw: object, prefix: str = "") -> list[str]:
    """The names of the floating-point tensors in ``raw`` (tensors in nested dicts and lists, as a
    checkpoint holds them) that hold NaN or infinite values."""
    import torch

    if isinstance(raw, torch.Tensor):
        return [prefix or "tensor"] if raw.is_floating_point() and not bool(torch.isfinite(raw).all()) else []
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, (list, tuple)) else ()
    return [name for key, value in items for name in non_finite_tensors(value, f"{prefix}.{key}" if prefix else str(key))]


def non_finite_message(names: list[str], source: str) -> str:
    """What to say of a model file whose tensors ``names`` hold NaN or infinite values ("" if none)."""
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{source} holds NaN or infinite weights ({shown}): the file is damaged, or was saved from a "
            "training run that diverged, and cannot restore anything")


def non_finite_in_file(path: Union[str, Path]) -> str:
    """:func:`non_finite_message` for a model file ("" when every weight is finite), reading a
    PyTorch file memory-mapped where it can (a large model is not held in memory twice)."""
    from engine.models.checkpoint import SAFETENSORS, checkpoint_format, load_plain_pickle, read_checkpoint

    path = Path(path)
    if checkpoint_format(path) == SAFETENSORS:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            names = [k for k in f.keys() if non_finite_tensors(f.get_tensor(k))]
        return non_finite_message(names, path.name)
    try:
        raw = load_plain_pickle(path, mmap=True)
    except Exception:  # noqa: BLE001 - a legacy (not zip) file cannot be mapped; read_checkpoint says what is wrong
        raw = read_checkpoint(path)
    return non_finite_message(non_finite_tensors(raw), path.name)


def layout_mismatch(expected: Mapping[str, tuple], actual: Mapping[str, tuple]) -> str:
    """What differs between the tensors a network has (``expected``: name -> shape) and those a file
    holds (``actual``), for a refusal: "missing: a, b, c ...; unexpected: ...; wrong shape: ..."
    ("" when they fit exactly)."""
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    wrong = sorted(k for k in set(actual) & set(expected) if tuple(actual[k]) != tuple(expected[k]))
    return "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                     for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                     if keys)


def refuse_role(kind: ModelKind, wanted: str, source: str, advice: str = "") -> None:
    """ModelFileError when ``kind`` is not a ``wanted`` model: "x.pth is a clean-up network ..., not
    a diffusion model ...". ``advice`` ends the message (where to use such a file instead)."""
    if kind.role != wanted:
        what = ROLE_NAMES.get(kind.role, kind.role)
        detail = f" ({kind.summary})" if kind.summary else ""
        raise ModelFileError(f"{source} is {what}{detail}, not {ROLE_NAMES.get(wanted, wanted)}"
                             + (f". {advice}" if advice else ""))
