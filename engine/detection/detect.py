"""``detect(image, detector) -> DamageScores`` and ``mask_from_scores(scores, sensitivity)``.

Scores are one byte per pixel of the photo (0..255 for a damage probability of 0..1), so the full
size costs the photo's pixel count in bytes; everything else the detectors hold is bounded (they
analyse a reduced photo in tiles). The mask at sensitivity ``s`` is ``scores ≥ 1 − s``: the
default :data:`DEFAULT_SENSITIVITY` (0.6) is the network's official threshold (0.4), and the
built-in detector's scores are calibrated probabilities too, so the same default suits both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Generator, Optional, Union

import cv2
import numpy as np
import torch

from engine.errors import InputError
from engine.events import Event, StageEvent

BUILTIN = "builtin"
DEFAULT_DETECTOR = BUILTIN
DEFAULT_SENSITIVITY = 0.6
#: The network sees the photo with this shorter side, as its official detector does (scale_256).
NETWORK_SHORT_SIDE = 256


@dataclass(frozen=True)
class DamageScores:
    """How sure the detector is that each pixel is damaged: (H, W) uint8, 255 = certain."""

    scores: np.ndarray
    detector: str  # "builtin", or the model id / file
    summary: str = ""  # what the detector is, for people

    def mask(self, sensitivity: float = DEFAULT_SENSITIVITY) -> np.ndarray:
        return mask_from_scores(self.scores, sensitivity)


def threshold_of(sensitivity: float) -> int:
    """The smallest score (0..255) that is damage at ``sensitivity`` in [0, 1]."""
    if not 0.0 <= float(sensitivity) <= 1.0:
        raise InputError(f"the sensitivity must be between 0 and 1, got {sensitivity}")
    return max(1, int(round((1.0 - float(sensitivity)) * 255)))


def mask_from_scores(scores: np.ndarray, sensitivity: float = DEFAULT_SENSITIVITY,
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W) bool: the pixels whose score reaches the threshold of ``sensitivity`` (0: nothing
    but certain damage, 1: everything the detector found at all). Cheap: one comparison."""
    return np.greater_equal(scores, threshold_of(sensitivity), out=out)


def _as_photo(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (H, W, 1) float32 [0, 1], without a copy when it already is."""
    photo = np.asarray(image)
    if photo.ndim == 2:
        photo = photo[..., None]
    if photo.ndim != 3 or photo.shape[2] not in (1, 3, 4) or 0 in photo.shape[:2]:
        raise InputError(f"detection needs an (H, W) or (H, W, 3) photo, got shape {photo.shape}")
    if photo.shape[2] == 4:
        photo = photo[..., :3]
    if photo.dtype == np.uint8:
        return photo.astype(np.float32) / 255
    if photo.dtype == np.uint16:
        return photo.astype(np.float32) / 65535
    return photo.astype(np.float32, copy=False)


def _to_bytes(scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scores in [0, 1] at any size -> (height, width) uint8 (bilinear when resized)."""
    small = np.clip(scores * 255 + 0.5, 0, 255).astype(np.uint8)
    if small.shape != (height, width):
        small = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return small


def detect(image: np.ndarray, detector: Union[str, Path] = DEFAULT_DETECTOR, *,
           cancel: Optional[threading.Event] = None, device: str = "auto",
           stage: str = "detect") -> Generator[Event, None, DamageScores]:
    """Find the damage in ``image`` ((H, W) or (H, W, 3) pixels: float32 in [0, 1], or uint8/16).

    ``detector``: ``"builtin"``, or a catalog id or file of the scratch-detection network (a file
    of another kind is refused saying what it is). Yields a :class:`StageEvent`, the tiles'
    plan/progress events (``stage``); cancellable between tiles (:class:`engine.errors.Cancelled`).
    Returns :class:`DamageScores` at the photo's size (``scores = yield from detect(...)``)."""
    from engine.tiling.msr import Progress

    photo = _as_photo(image)
    height, width = photo.shape[:2]
    spec = str(detector)
    if spec == BUILTIN:
        from engine.detection.builtin import builtin_scores, tile_count

        progress = Progress(total=tile_count(height, width, photo.shape[2]) + 1)
        yield StageEvent("detecting damage")
        scores = yield from builtin_scores(photo, cancel=cancel, progress=progress, stage=stage)
        progress.done += 1  # the tears, found on the whole photo
        yield progress.event()
        summary = "built-in detector (image processing)"
    else:
        yield StageEvent("loading the damage detector")
        net, name, summary = load_network(spec)
        yield StageEvent("detecting damage")
        scores = yield from network_scores(photo, net, device=device, cancel=cancel, stage=stage)
        spec = name
    return DamageScores(_to_bytes(scores, height, width), spec, summary)


def detect_damage(image: np.ndarray, detector: Union[str, Path] = DEFAULT_DETECTOR, *,
                  cancel: Optional[threading.Event] = None, device: str = "auto") -> DamageScores:
    """:func:`detect` run to its end, its events dropped."""
    events = detect(image, detector, cancel=cancel, device=device)
    while True:
        try:
            next(events)
        except StopIteration as stop:
            return stop.value


_loaded: dict[tuple, tuple] = {}  # the last network read: {(file, size, mtime): (network, summary)}
_loading = threading.Lock()


def load_network(spec: str):
    """(network, name, summary) of a scratch-detector model id or file; a file of another kind is
    refused: "x.pt is a diffusion model (...), not a damage detector". The last one read is kept
    (a folder of photos, or Detect again, does not read the file each time)."""
    from engine.detection.network_file import build_network
    from engine.models import kinds
    from engine.models.catalog import resolve_model_file
    from engine.models.checkpoint import read_checkpoint

    path = resolve_model_file(spec)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _loading:
        if key not in _loaded:
            raw = read_checkpoint(path)
            kind = kinds.inspect_raw(raw, path.name)
            kinds.refuse_role(kind, kinds.DETECTOR, path.name,
                              "Choose the built-in detector or the scratch detector of Bringing Old Photos Back to Life")
            _loaded.clear()
            _loaded[key] = build_network(raw, path.name), kind.summary
        net, summary = _loaded[key]
    return net, spec, summary


def network_scores(photo: np.ndarray, net: torch.nn.Module, *, device: str = "auto",
                   cancel: Optional[threading.Event] = None, stage: str = "detect",
                   short_side: int = NETWORK_SHORT_SIDE, tile: int = 768) -> Generator[Event, None, np.ndarray]:
    """Damage probabilities of the network at its working size (the photo's gray, shorter side
    ``short_side``), in blended tiles; (h, w) float32."""
    from engine.device import pick_device
    from engine.detection.thin_damage import gray_of
    from engine.tiling.blended import plan_tiles, run_tiles
    from engine.tiling.msr import Progress

    torch_device = pick_device(device)
    height, width = photo.shape[:2]
    f = min(short_side / min(height, width), 16 * short_side / max(height, width))  # a long strip: ≤ 4096 px
    size = (max(1, round(width * f)), max(1, round(height * f)))
    gray = gray_of(photo[..., 0] if photo.shape[2] == 1 else photo)
    work = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)[..., None]
    spec = network_tile_spec(net.config, tile)
    progress = Progress(total=len(plan_tiles(size[1], size[0], spec)))
    net = net.to(torch_device)

    def run(batch: torch.Tensor, _boxes) -> torch.Tensor:
        return torch.sigmoid(net(batch * 2 - 1))

    probability = yield from run_tiles(run, work, spec, device=torch_device, cancel=cancel, stage=stage,
                                       progress=progress, scale_to_output=width / size[0])
    return probability[..., 0]


def receptive_radius(config) -> int:
    """Pixels on each side that one output pixel of the network depends on: the stem's 7 × 7, per
    level down a convolution, the blur and ``conv_num`` convolutions, per level up the bilinear
    step, a convolution and ``conv_num`` more, and the last convolution (154 for the official one)."""
    down = sum(2 ** level * (2 + 2 * config.conv_num) for level in range(config.depth))
    up = sum(2 ** level * (2 + config.conv_num) for level in range(config.depth))
    return 3 + down + up + 1


def network_tile_spec(config, tile: int = 768):
    """Tiles of the network: zero-weight margins cover its receptive field (with one ``multiple``
    to spare: the strided steps make it a little lopsided), so tiled equals untiled within float
    rounding (tests/test_damage_network.py)."""
    from engine.tiling.blended import TileSpec

    m = config.multiple
    margin = -(-(receptive_radius(config) + m) // m) * m
    overlap = 2 * margin + 4 * m
    return TileSpec(in_channels=1, out_channels=1, tile=max(tile, overlap + m), overlap=overlap, margin=margin,
                    multiple=m, bytes_per_pixel=2500.0, batch=1)
