"""Stage 1 of a two-stage restoration, as a pre-stage of :func:`engine.pipeline.restore`.

The pre-stage runs an image-to-image network over blended tiles of the photo
(:func:`engine.tiling.blended.run_tiles`) and hands stage 2 its *soft observation*: the cleaned
photo x1, pooled by k, becomes "the photo" the usual engine restores with ``Tasks.sr`` multiplied
by k (A = avgpool_k composed with the user's mask, gray and upscale operators, y = A(x1), DDNM+
noise σ_y; k and σ_y from the fidelity, :mod:`engine.cleanup.fidelity`). x1 is padded by
reflection to a multiple of k; the result is cropped back.

**The hook in the pipeline** is four calls on :class:`CleanupStage`:

1. ``pre = CleanupStage.load(request, device)``: the network (before the photo is decoded: its
   scale sets the memory the photo needs, :attr:`memory_scale`);
2. ``request = pre.plan(request, (h, w), device)``: stage 2's request (tasks as above, HiR off,
   fewer steps for the warm start; :attr:`needs_stage2` is False at fidelity 1 with nothing else
   to do); ``pre.plan_tiles()`` once stage 2's network is loaded (the tile size comes from the
   device memory left);
3. ``rgb, fill = yield from pre.run(rgb, fill, monochrome, progress, resume, cancel)``: stage 1
   (events with stage ``"cleanup"``, one progress unit per tile, finished tiles kept with the
   resume state and reused), returning stage 2's photo and mask;
4. ``pre.report(result)``, and ``pre.warm_start(...)`` for the fast preset.

Any network can be the pre-stage: it needs the blended runner's TileFn call and a TileSpec
(:class:`PreStageNetwork`). :data:`PRESTAGE_LOADERS` maps a model's role to its loader: the
spandrel clean-up networks today; a fast ×4 upscaler (ResShift) can join with its role.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Optional, Protocol

import numpy as np
import torch

from engine.cleanup.fidelity import SoftObservation, soft_observation
from engine.events import Event, LogEvent, PlanEvent, WindowFinished
from engine.geometry import Box
from engine.models import kinds
from engine.request import RestoreRequest, Tasks
from engine.tiling.blended import TileSpec, plan_tiles, run_tiles, tile_side
from engine.tiling.tile_store import TileStore, layout_digest, quantize

STAGE = "cleanup"


class PreStageNetwork(Protocol):
    """What the pre-stage runs: the blended runner's TileFn and how to tile it."""

    spec: TileSpec
    name: str  # the model id or file, for the log and report
    summary: str  # "SCUNet, ×1"
    licence: str

    def __call__(self, tiles: torch.Tensor, boxes: list[Box]) -> torch.Tensor: ...


@dataclass
class SpandrelPreStage:
    """A spandrel clean-up network as a pre-stage; outputs are rounded to 16-bit levels, so tiles
    kept for resume are exactly what was computed (engine.tiling.tile_store)."""

    network: Any  # engine.cleanup.networks.LoadedNetwork
    spec: TileSpec

    @property
    def name(self) -> str:
        return self.network.name

    @property
    def summary(self) -> str:
        return self.network.kind.summary

    @property
    def licence(self) -> str:
        return self.network.kind.licence

    @torch.inference_mode()
    def __call__(self, tiles: torch.Tensor, boxes: list[Box]) -> torch.Tensor:
        return quantize(self.network.run(tiles))


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def load_spandrel(spec: str, device: torch.device, precision: str, raw: object = None) -> SpandrelPreStage:
    """A spandrel clean-up network as a pre-stage (``raw``: its file already read)."""
    from engine.cleanup.networks import load_network, tile_context

    net = load_network(spec, device=device, precision=precision, raw=raw)
    multiple = net.multiple()
    overlap, margin = tile_context(net.descriptor)
    tile = max(_ceil_to(max(net.kind.image_size, net.minimum()), multiple), _ceil_to(2 * overlap + 1, multiple))
    tiles = TileSpec(scale=net.kind.scale, tile=tile, overlap=_ceil_to(overlap, multiple), margin=margin,
                     multiple=multiple, bytes_per_pixel=net.bytes_per_pixel(), batch=1 if device.type == "cpu" else 4)
    return SpandrelPreStage(net, tiles)


#: Loaders of pre-stage networks by the role of the model file (engine.models.kinds):
#: ``loader(spec, device, precision, raw)``, raw being the file's contents, read once.
PRESTAGE_LOADERS: dict[str, Callable[..., PreStageNetwork]] = {kinds.CLEANUP: load_spandrel}


def load_prestage(spec: str, device: torch.device, precision: str) -> PreStageNetwork:
    """The pre-stage network for a model id or file, by what the file is; a model no pre-stage
    runs (a diffusion model, a classifier) is refused naming what it is."""
    from engine.cleanup.networks import advice_for, read_model_file

    path, raw = read_model_file(spec)
    kind = kinds.inspect_raw(raw, path.name)  # ModelFileError when no family claims the file
    loader = PRESTAGE_LOADERS.get(kind.role)
    if loader is None:
        kinds.refuse_role(kind, kinds.CLEANUP, path.name, advice_for(kind.role))
    return loader(spec, device, precision, raw)


def area_downsample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) float32 -> (height, width, C) by area averaging (block means for whole factors)."""
    h, w, c = image.shape
    if (h, w) == (height, width):
        return image
    if h % height == 0 and w % width == 0:
        fy, fx = h // height, w // width
        out = np.empty((height, width, c), np.float32)
        for top in range(0, height, 64):  # in bands: no full-size temporary
            band = image[top * fy : (top + 64) * fy]
            out[top : top + 64] = band.reshape(-1, fy, width, fx, c).mean(axis=(1, 3))
        return out
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _reflect_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    return np.pad(image, ((0, height - h), (0, width - w)) + ((0, 0),) * (image.ndim - 2), mode="symmetric")


@dataclass
class CleanupStage:
    """Stage 1 of one run, and what stage 2 gets from it (see the module doc)."""

    network: PreStageNetwork
    spec: str  # the model id or file the request named
    fidelity: float
    warm: bool
    device: torch.device = torch.device("cpu")
    soft: SoftObservation = field(init=False)
    photo_size: tuple[int, int] = (0, 0)  # (h, w) of the user's photo
    scale: int = 1  # the user's upscale s
    out_scale: int = 1  # x1's scale r1 (the network's, area-downsampled when larger than s)
    boxes: list[Box] = field(default_factory=list)  # stage-1 tiles, input pixels
    tile_spec: Optional[TileSpec] = None
    tasks: Tasks = field(default_factory=Tasks)  # stage 2's
    x1: Optional[np.ndarray] = None  # (h·r1, w·r1, 3) float32 once run
    tiles_computed: int = 0
    resumed: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.soft = soft_observation(self.fidelity, self.warm)

    @classmethod
    def load(cls, request: RestoreRequest, device: torch.device) -> "CleanupStage":
        network = load_prestage(str(request.cleanup), device, request.precision)
        return cls(network, str(request.cleanup), request.fidelity, request.warm_start, device)

    @property
    def memory_scale(self) -> int:
        """The network's scale: its blended canvas is that much larger than the photo."""
        return self.network.spec.scale

    @property
    def q(self) -> int:
        return self.scale // self.out_scale

    @property
    def x1_size(self) -> tuple[int, int]:
        h, w = self.photo_size
        return h * self.out_scale, w * self.out_scale

    @property
    def padded_size(self) -> tuple[int, int]:
        k = self.soft.k
        return tuple(_ceil_to(v, k) for v in self.x1_size)  # type: ignore[return-value]

    @property
    def stage2_photo_size(self) -> tuple[int, int]:
        """The photo stage 2 restores: x1, padded, pooled by k."""
        return self.padded_size[0] // self.soft.k, self.padded_size[1] // self.soft.k

    @property
    def output_size(self) -> tuple[int, int]:
        return self.photo_size[0] * self.scale, self.photo_size[1] * self.scale

    @property
    def needs_stage2(self) -> bool:
        return self.tasks.any()

    def plan(self, request: RestoreRequest, photo_size: tuple[int, int], device: torch.device) -> RestoreRequest:
        """Plan the tiles and return stage 2's request: the user's tasks on x1 pooled by k (×q·k,
        avgpool, σ_y), HiR off (y already fixes the coarse content), fewer steps for a warm start."""
        from engine.cleanup.networks import output_scale

        self.photo_size, self.scale = (int(photo_size[0]), int(photo_size[1])), int(request.tasks.sr)
        self.out_scale = output_scale(self.network.spec.scale, self.scale)
        t = request.tasks
        self.tasks = Tasks(inpaint=t.inpaint, colorize=t.colorize, sr=self.q * self.soft.k, noise=self.soft.sigma_y)
        return request.replace(tasks=self.tasks, cleanup=None, warm_start=False, hir=False,
                               steps=self.soft.steps(request.steps))

    def plan_tiles(self) -> list[Box]:
        """The tiles, sized from the device's free memory now (after stage 2's network is loaded),
        once: the plan must not change during the run."""
        if not self.boxes:
            side = tile_side(self.network.spec, self.device)
            self.tile_spec = dataclasses.replace(self.network.spec, tile=side, bytes_per_pixel=0.0)
            self.boxes = plan_tiles(*self.photo_size, self.tile_spec)
        return self.boxes

    def fingerprint_fields(self) -> dict[str, Any]:
        """What the stage-2 request leaves out that changes the result (for the resume state)."""
        return {"cleanup": self.spec, "fidelity": self.fidelity, "warm_start": self.warm}

    # -- running ------------------------------------------------------------------------------------
    def run(self, rgb: np.ndarray, fill: Optional[np.ndarray], monochrome: bool, progress, resume,
            cancel) -> Generator[Event, None, tuple[np.ndarray, Optional[np.ndarray]]]:
        """Stage 1 on ``rgb`` (h, w, 3) [0, 1]; returns stage 2's photo (x1 pooled by k, [0, 1]) and
        mask (the fill mask at x1's scale, max-pooled by k)."""
        started = time.perf_counter()
        self.plan_tiles()
        store, warning = self._store(resume)
        if warning:
            yield LogEvent("warning", warning)
        x1 = store.result() if store is not None else None
        n = len(self.boxes)
        if x1 is not None and x1.shape[:2] == self.x1_size:
            self.resumed = n
            progress.done += n
            progress.baseline += n
            box = Box(0, 0, *self.x1_size)
            yield PlanEvent(self.x1_size, (box,), (0,), STAGE, self.scale / self.out_scale)
            yield WindowFinished(0, box, x1, STAGE, self.scale / self.out_scale, resumed=True)
            yield LogEvent("info", "stage 1 was finished by an earlier run: its result is reused")
        else:
            x1 = yield from self._tiles(rgb, store, progress, cancel)
        if monochrome:
            x1 = np.repeat(x1.mean(axis=2, keepdims=True, dtype=np.float32), 3, axis=2)
        self.x1 = x1
        self.seconds = time.perf_counter() - started
        return self._stage2_inputs(x1, fill)

    def _store(self, resume) -> tuple[Optional[TileStore], Optional[str]]:
        if resume is None:
            return None, None
        layout = layout_digest(self.boxes, self.tile_spec, self.network.name, self.x1_size)
        try:
            return TileStore.open(resume.directory / STAGE, resume.fingerprint, layout), None
        except OSError as exc:
            return None, f"the progress of stage 1 cannot be saved ({exc.strerror or exc}); the run goes on"

    def _tiles(self, rgb, store, progress, cancel) -> Generator[Event, None, np.ndarray]:
        done = store.done_tiles() if store is not None else {}
        self.resumed = len(done)
        progress.done += len(done)
        progress.baseline += len(done)
        if done:
            yield LogEvent("info", f"resuming stage 1: {len(done)} of {len(self.boxes)} tiles were already finished")
        warnings: list[str] = []

        def keep(index: int, output: np.ndarray) -> None:
            self.tiles_computed += 1
            warning = store.try_save_tile(index, output) if store is not None else None
            if warning:
                warnings.append(warning)

        spec = self.tile_spec
        raw = yield from run_tiles(self.network, rgb, spec, device=self.device, cancel=cancel, stage=STAGE,
                                   progress=progress, done=done, on_tile=keep,
                                   scale_to_output=self.scale / spec.scale)
        for warning in warnings[:1]:
            yield LogEvent("warning", warning)
        x1 = quantize(area_downsample(raw, *self.x1_size))
        if store is not None:
            warning = store.try_save_result(x1)
            if warning:
                yield LogEvent("warning", warning)
        return x1

    def _stage2_inputs(self, x1: np.ndarray, fill: Optional[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
        k = self.soft.k
        hp, wp = self.padded_size
        photo = area_downsample(_reflect_pad(x1, hp, wp), hp // k, wp // k)
        if photo is x1:
            photo = x1.copy()  # stage 2 turns its photo into [-1, 1] in place: x1 stays [0, 1]
        mask = None
        if fill is not None:
            r = self.out_scale
            big = fill.repeat(r, axis=0).repeat(r, axis=1) if r > 1 else fill
            big = _reflect_pad(big, hp, wp)
            mask = big.reshape(hp // k, k, wp // k, k).any(axis=(1, 3))
        return photo, mask

    def warm_start(self, padded_height: int, padded_width: int, schedule, device, dtype):
        """The fast preset's start: x1 (padded to the stage-2 canvas / q) noised to the schedule's
        first step, each window from its own generator (engine.tiling.hir.warm_start)."""
        from engine.tiling.hir import warm_start

        q = self.q
        base = _reflect_pad(self.x1, padded_height // q, padded_width // q)
        x = torch.from_numpy(np.ascontiguousarray(base)).permute(2, 0, 1)[None].mul(2.0).sub_(1.0)
        return warm_start(x, q, schedule, device, dtype)

    # -- after ---------------------------------------------------------------------------------------
    def result_without_stage2(self) -> np.ndarray:
        """Fidelity 1 with nothing else to do: x1 itself."""
        return self.x1

    def report(self, result: np.ndarray) -> dict[str, Any]:
        """What the run report adds: the stage-1 model, its tiles and seconds, the soft observation,
        and how far stage 2 moved from x1 (RMS in [0, 1] units, at x1's scale)."""
        h, w = self.x1_size
        moved = area_downsample(np.ascontiguousarray(result[: h * self.q, : w * self.q]), h, w) - self.x1
        return {
            "cleanup": {"model": self.network.name, "network": self.network.summary, "licence": self.network.licence,
                        "scale": self.network.spec.scale, "tiles": len(self.boxes),
                        "tiles_computed": self.tiles_computed, "tiles_resumed": self.resumed,
                        "seconds": round(self.seconds, 3)},
            "fidelity": self.fidelity,
            "soft_observation": {"k": self.soft.k, "sigma_y": self.soft.sigma_y, "start_t": self.soft.start_t,
                                 "stage2": self.needs_stage2},
            "change_from_stage1": round(float(math.sqrt(float(np.mean(np.square(moved, dtype=np.float64))))), 6),
        }
