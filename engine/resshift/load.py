"""Getting a ready :class:`~engine.resshift.upscaler.ResShiftUpscaler` from a model spec.

A spec is a catalog or imported model id (``resshift-realsr-x4``), a denoiser file, or
``test-tiny-resshift`` (tiny random networks for tests and demos: never a restoration). The
autoencoder comes from the denoiser's catalog companion, else the installed ``resshift-vq-f4`` (or
any installed model of that family), else an ``autoencoder_vq_f4.pth`` beside the denoiser file.
The diffusion schedule is not in the weights: a catalog entry names its own (``"schedule"``, its
config's ``diffusion.params``); any other file gets the v3 schedule (4 steps), which the log says.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Optional

import torch

from engine.errors import ModelFileError
from engine.models import kinds
from engine.models.speed import prepare_network
from engine.models.tiny import randomize_weights
from engine.resshift.autoencoder import AutoencoderConfig, VQAutoencoder
from engine.resshift.diffusion import ResShiftSchedule
from engine.resshift.files import AUTOENCODER, UNET, load_network
from engine.resshift.unet import SwinUNet, SwinUNetConfig
from engine.resshift.upscaler import ResShiftUpscaler

TINY = "test-tiny-resshift"
DEFAULT_AUTOENCODER = "resshift-vq-f4"
AUTOENCODER_FILE = "autoencoder_vq_f4.pth"
#: The catalog entry field with a model's schedule: the keys of ResShiftSchedule.
SCHEDULE_FIELD = "schedule"


def tiny_configs() -> tuple[SwinUNetConfig, AutoencoderConfig]:
    """Every feature of the official networks at a size a CPU runs in milliseconds: two levels
    with shifted windows of 4, one head; an f4 autoencoder of 32 channels and 64 codes."""
    unet = SwinUNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), swin_levels=(0, 1),
                          embed_dim=32, heads=1, window=4, depth=2, mlp_hidden=64, image_size=16)
    return unet, AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=1, n_embed=64)


def _entries() -> dict:
    from engine.models.catalog import all_entries

    try:
        return all_entries()
    except Exception:  # noqa: BLE001 - no catalog or registry: the file is all there is
        return {}


def _entry(spec: str):
    """The catalog/imported entry a spec names (by id, or by its file's name), or None."""
    entries = _entries()
    if spec in entries:
        return entries[spec]
    name = Path(spec).name
    return next((e for e in entries.values() if e.architecture == UNET and e.file_name == name), None)


def schedule_for(spec: str) -> tuple[ResShiftSchedule, bool]:
    """(schedule, whether it is known for this model rather than assumed): the catalog entry's, or
    for an imported model or a file, that of the catalog model whose official file name it has."""
    entry = _entry(spec)
    if entry is not None and entry.custom:  # imported: the name it had when it was imported
        original = Path(str(entry.extra.get("imported_from", ""))).name
        entry = next((e for e in _entries().values() if not e.custom and e.file_name == original), entry)
    fields = entry.extra.get(SCHEDULE_FIELD) if entry is not None else None
    if not isinstance(fields, dict):
        return ResShiftSchedule(), spec == TINY
    try:
        return dataclasses.replace(ResShiftSchedule(), **fields), True
    except TypeError as exc:
        raise ModelFileError(f"the catalog's schedule of {spec} is not understood ({exc})") from exc


def _resolve(spec: str) -> Path:
    from engine.models import _resolve as resolve_model

    return resolve_model(spec)


def autoencoder_path(spec: str, denoiser: Path) -> Path:
    """The autoencoder file that goes with the denoiser ``spec`` (see the module doc)."""
    entry = _entry(spec)
    others = [e.id for e in _entries().values() if e.architecture == AUTOENCODER]  # an imported one, too
    candidates = list(entry.companions if entry is not None else ()) + [DEFAULT_AUTOENCODER] + others
    for candidate in candidates:
        try:
            path = _resolve(candidate)
        except ModelFileError:
            continue
        return path
    beside = denoiser.with_name(AUTOENCODER_FILE)
    if beside.is_file():
        return beside
    raise ModelFileError(f"the fast upscaler {spec} needs its autoencoder: run `python -m engine models download "
                         f"{DEFAULT_AUTOENCODER}` (or get it under Models), or put {AUTOENCODER_FILE} beside "
                         f"{denoiser.name}")


def is_upscaler(spec: Optional[str]) -> bool:
    """Whether a model spec names a fast upscaler: for a file, from its tensor names (memory-mapped:
    a 2 GB diffusion model is not read for this); for an id, from the catalog's role."""
    from engine.models import TINY_MODELS, _shapes_only
    from engine.resshift.files import family_of, without_prefixes

    if spec == TINY:
        return True
    if not spec or spec in TINY_MODELS:
        return False
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            return family_of(without_prefixes(_shapes_only(path))) == UNET
        except ModelFileError:
            return False
    entry = _entry(spec)
    return entry is not None and entry.role == kinds.UPSCALER


def load_upscaler(spec: str, *, device: torch.device, precision: str = "fp32", seed: int = 1234,
                  cancel: Optional[threading.Event] = None, raw: object = None) -> ResShiftUpscaler:
    """The upscaler of ``spec`` on ``device`` (networks cast once for ``precision``); ``raw``: the
    denoiser file's contents, when they were read already."""
    schedule, _ = schedule_for(spec)
    if spec == TINY:
        unet_config, ae_config = tiny_configs()
        unet = randomize_weights(SwinUNet(unet_config)).eval().requires_grad_(False)
        autoencoder = randomize_weights(VQAutoencoder(ae_config), seed=7).eval().requires_grad_(False)
    else:
        path = _resolve(spec)
        unet = load_network(path, UNET, torch.device("cpu"), raw=raw)
        autoencoder = load_network(autoencoder_path(spec, path), AUTOENCODER, torch.device("cpu"))
    unet = prepare_network(unet, precision=precision, device=device, inplace=True)
    autoencoder = prepare_network(autoencoder, precision=precision, device=device, inplace=True)
    autoencoder.quantize.float()  # nearest-code search stays in float32
    return ResShiftUpscaler(unet, autoencoder, schedule, device=device, precision=precision, seed=seed,
                            cancel=cancel, is_random=spec == TINY, name=spec)
