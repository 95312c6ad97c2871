"""The pre-stage of :func:`engine.pipeline.restore`: an image-to-image network over blended tiles
of the photo, before the DDNM engine. Two kinds of network take this place (their roles:
:mod:`engine.cleanup.roles`):

- **clean-up** (``request.cleanup``, stage ``"cleanup"``): stage 1 of a two-stage restoration. Its
  result x1, pooled by k, becomes "the photo" the usual engine restores with ``Tasks.sr``
  multiplied by k (A = avgpool_k composed with the user's mask, gray and upscale operators,
  y = A(x1), DDNM+ noise σ_y; k and σ_y from the fidelity, :mod:`engine.cleanup.fidelity`). x1 is
  padded by reflection to a multiple of k; the result is cropped back. A network larger than the
  upscale is area-downsampled; a smaller one leaves the rest of the upscale to stage 2.
- **fast upscaler** (``request.upscaler``, stage ``"upscale"``; ResShift, engine.resshift.stage):
  always at fidelity 1. Its ×4 is resized to the output (area for ×2, bicubic for ×8), and x1 is
  kept exactly: the engine only fills or colorizes it, at ×1.

Either way, at fidelity 1 with nothing else to do (:attr:`PreStage.needs_stage2` False), x1 is the
result and no diffusion model is loaded.

**The hook in the pipeline** is a few calls on :class:`PreStage`:

1. ``pre = PreStage.load(request, device, cancel)``: the network (before the photo is decoded: it
   sets the memory the photo needs, :meth:`host_bytes_per_input_pixel`) and its log lines
   (:meth:`notes`);
2. ``request = pre.plan(request, (h, w))``: stage 2's request; ``pre.plan_tiles()`` once stage
   2's network is loaded (the tile size comes from the device memory left);
3. ``rgb, fill = yield from pre.run(rgb, fill, monochrome, progress, resume, cancel)``: the tiles
   (events with the role's stage name, progress units per tile, finished tiles and then the result
   kept in the resume state, :class:`engine.tiling.tile_store.TileStore`, and reused), returning
   stage 2's photo and mask;
4. ``pre.report(result)``, and ``pre.warm_start(...)`` for the clean-up's fast preset.

Any network can be the pre-stage: it needs the blended runner's TileFn call, a TileSpec and a few
names (:class:`PreStageNetwork`). :data:`PRESTAGE_LOADERS` maps a model's role to its loader.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Optional, Protocol

import numpy as np
import torch

from engine.cleanup.fidelity import SoftObservation, soft_observation
from engine.cleanup.resample import area_downsample, make_gray, reflect_pad, resize
from engine.cleanup.roles import STAGE, UPSCALE_STAGE, PreStageRole, role_for  # noqa: F401 - the stage names
from engine.errors import ModelFileError
from engine.events import Event, LogEvent, PlanEvent, WindowFinished
from engine.geometry import Box
from engine.models import kinds
from engine.request import RestoreRequest, Tasks
from engine.resshift.load import TINY as TINY_UPSCALER
from engine.resshift.stage import load_prestage as load_resshift
from engine.tiling.blended import TileSpec, plan_tiles, run_tiles, tile_side
from engine.tiling.tile_store import TileStore, layout_digest, quantize


class PreStageNetwork(Protocol):
    """What the pre-stage runs: the blended runner's TileFn and how to tile it."""

    spec: TileSpec
    name: str  # the model id or file, for the log and report
    summary: str  # "SCUNet, ×1", "ResShift ×4 in 4 steps"
    licence: str
    is_random: bool  # random weights (test networks): the result is not a restoration
    steps: int  # network evaluations per tile

    def tile_units(self, height: int, width: int) -> int:
        """A tile's share of the run's progress bar (the engine's bar counts denoiser calls)."""

    def notes(self) -> list[tuple[str, str]]:
        """(level, message) log lines about the loaded network."""

    def __call__(self, tiles: torch.Tensor, boxes: list[Box]) -> torch.Tensor: ...


@dataclass
class SpandrelPreStage:
    """A spandrel clean-up network as a pre-stage; outputs are rounded to 16-bit levels, so tiles
    kept for resume are exactly what was computed (engine.tiling.tile_store)."""

    network: Any  # engine.cleanup.networks.LoadedNetwork
    spec: TileSpec
    is_random: bool = False
    steps: int = 1

    @property
    def name(self) -> str:
        return self.network.name

    @property
    def summary(self) -> str:
        return self.network.kind.summary

    @property
    def licence(self) -> str:
        return self.network.kind.licence

    def tile_units(self, height: int, width: int) -> int:
        return 1

    def notes(self) -> list[tuple[str, str]]:
        return []

    @torch.inference_mode()
    def __call__(self, tiles: torch.Tensor, boxes: list[Box]) -> torch.Tensor:
        return quantize(self.network.run(tiles))


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def load_spandrel(spec: str, device: torch.device, precision: str, raw: object = None, *, seed: int = 0,
                  cancel=None) -> SpandrelPreStage:
    """A spandrel clean-up network as a pre-stage (``raw``: its file already read). It makes one
    deterministic network call per tile: ``seed`` is not used, and ``cancel`` is checked between
    tiles by the blended runner."""
    from engine.cleanup.networks import load_network, tile_context

    net = load_network(spec, device=device, precision=precision, raw=raw)
    multiple = net.multiple()
    overlap, margin = tile_context(net.descriptor)
    tile = max(_ceil_to(max(net.kind.image_size, net.minimum()), multiple), _ceil_to(2 * overlap + 1, multiple))
    tiles = TileSpec(scale=net.kind.scale, tile=tile, overlap=_ceil_to(overlap, multiple), margin=margin,
                     multiple=multiple, bytes_per_pixel=net.bytes_per_pixel(), batch=1 if device.type == "cpu" else 4)
    return SpandrelPreStage(net, tiles)


#: Loaders of pre-stage networks by the role of the model file (engine.models.kinds):
#: ``loader(spec, device, precision, raw, seed=..., cancel=...)``, raw being the file's contents,
#: read once (None for a built-in test network).
PRESTAGE_LOADERS: dict[str, Callable[..., PreStageNetwork]] = {kinds.CLEANUP: load_spandrel,
                                                                kinds.UPSCALER: load_resshift}
#: Built-in networks (random weights, for tests and demos) that are no file: their role.
BUILT_IN = {TINY_UPSCALER: kinds.UPSCALER}


def load_prestage(spec: str, role: str, device: torch.device, precision: str, *, seed: int = 0,
                  cancel=None) -> PreStageNetwork:
    """The pre-stage network of ``role`` for a model id or file, by what the file is; a model of
    another role (a diffusion model, a clean-up network named as the upscaler) is refused naming
    what it is and where it goes instead."""
    from engine.cleanup.networks import advice_for, read_model_file

    raw = None
    if spec in BUILT_IN:
        if BUILT_IN[spec] != role:
            raise ModelFileError(f"{spec} is {kinds.ROLE_NAMES[BUILT_IN[spec]]}, not {kinds.ROLE_NAMES[role]}")
    else:
        path, raw = read_model_file(spec)
        kind = kinds.inspect_raw(raw, path.name)  # ModelFileError when no family claims the file
        kinds.refuse_role(kind, role, path.name, advice_for(kind.role))
    return PRESTAGE_LOADERS[role](spec, device, precision, raw, seed=seed, cancel=cancel)


# -- one run's pre-stage ------------------------------------------------------------------------------
@dataclass
class PreStage:
    """The pre-stage of one run, and what stage 2 gets from it (see the module doc)."""

    network: PreStageNetwork
    role: PreStageRole
    spec: str  # the model id or file the request named
    fidelity: float
    warm: bool
    device: torch.device = torch.device("cpu")
    soft: SoftObservation = field(init=False)
    photo_size: tuple[int, int] = (0, 0)  # (h, w) of the user's photo
    scale: int = 1  # the user's upscale s
    out_scale: int = 1  # x1's scale r1
    boxes: list[Box] = field(default_factory=list)  # the tiles, input pixels
    tile_spec: Optional[TileSpec] = None
    units: int = 1  # progress units per tile
    tasks: Tasks = field(default_factory=Tasks)  # stage 2's
    x1: Optional[np.ndarray] = None  # (h·r1, w·r1, 3) float32 once run
    tiles_computed: int = 0
    resumed: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.soft = soft_observation(self.fidelity, self.warm)

    @classmethod
    def load(cls, request: RestoreRequest, device: torch.device, cancel=None) -> "PreStage":
        role = role_for(request)
        if role is None:
            raise ValueError("the request names no pre-stage network")
        spec = str(getattr(request, role.field))
        network = load_prestage(spec, role.role, device, request.precision, seed=request.seed, cancel=cancel)
        fidelity = request.fidelity if role.fidelity is None else role.fidelity
        return cls(network, role, spec, fidelity, request.warm_start, device)

    def notes(self) -> list[tuple[str, str]]:
        """(level, message) log lines on the loaded network."""
        lines = list(self.network.notes())
        if self.network.is_random:
            lines.append(("warning", f"{self.network.name} has random weights: its output is NOT {self.role.output}"))
        return lines

    def host_bytes_per_input_pixel(self, tasks: Tasks) -> float:
        """Host memory a run of ``tasks`` with this pre-stage needs per pixel of the photo."""
        from engine.host_memory import fast_upscale_bytes_per_input_pixel, restore_bytes_per_input_pixel

        scale = self.network.spec.scale
        if not self.role.to_output:  # stage 2's need, plus the network's canvas and x1
            return restore_bytes_per_input_pixel(tasks, scale)
        rest = Tasks(inpaint=tasks.inpaint, colorize=tasks.colorize)  # the canvas, then the engine at output size
        return (fast_upscale_bytes_per_input_pixel(tasks.sr, scale)
                + (tasks.sr ** 2 * restore_bytes_per_input_pixel(rest) if rest.any() else 0))

    @property
    def q(self) -> int:
        return self.scale // self.out_scale

    @property
    def canvas_size(self) -> tuple[int, int]:
        """The network's blended result: the photo at the network's scale."""
        s = self.network.spec.scale
        return self.photo_size[0] * s, self.photo_size[1] * s

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

    def plan(self, request: RestoreRequest, photo_size: tuple[int, int]) -> RestoreRequest:
        """Stage 2's request: the user's tasks on x1 pooled by k (×q·k, avgpool, σ_y), fewer steps
        for a warm start, HiR as the role says (engine.cleanup.roles)."""
        from engine.cleanup.networks import output_scale

        self.photo_size, self.scale = (int(photo_size[0]), int(photo_size[1])), int(request.tasks.sr)
        net_scale = self.network.spec.scale
        self.out_scale = self.scale if self.role.to_output else output_scale(net_scale, self.scale)
        t = request.tasks
        self.tasks = Tasks(inpaint=t.inpaint, colorize=t.colorize, sr=self.q * self.soft.k, noise=self.soft.sigma_y)
        return request.replace(tasks=self.tasks, cleanup=None, upscaler=None, warm_start=False,
                               hir=request.hir if self.role.stage2_hir else False,
                               steps=self.soft.steps(request.steps))

    def plan_tiles(self) -> list[Box]:
        """The tiles, sized from the device's free memory now (after stage 2's network is loaded),
        once: the plan must not change during the run."""
        if not self.boxes:
            side = tile_side(self.network.spec, self.device)
            self.tile_spec = dataclasses.replace(self.network.spec, tile=side, bytes_per_pixel=0.0)
            self.boxes = plan_tiles(*self.photo_size, self.tile_spec)
            self.units = int(self.network.tile_units(self.boxes[0].height, self.boxes[0].width))
        return self.boxes

    def progress_units(self) -> int:
        """The pre-stage's share of the run's progress bar."""
        return len(self.plan_tiles()) * self.units

    def fingerprint_fields(self) -> dict[str, Any]:
        """What the stage-2 request leaves out that changes the result (for the resume state)."""
        return {self.role.field: self.spec, "fidelity": self.fidelity, "warm_start": self.warm}

    # -- running ------------------------------------------------------------------------------------
    def run(self, rgb: np.ndarray, fill: Optional[np.ndarray], monochrome: bool, progress, resume,
            cancel) -> Generator[Event, None, tuple[np.ndarray, Optional[np.ndarray]]]:
        """The pre-stage on ``rgb`` (h, w, 3) [0, 1]; returns stage 2's photo (x1 pooled by k,
        [0, 1]) and mask (the fill mask at x1's scale, max-pooled by k)."""
        started = time.perf_counter()
        self.plan_tiles()
        store = yield from self._store(resume)
        canvas = store.result() if store is not None else None
        to_output = self.scale / self.out_scale
        if canvas is not None and canvas.shape[:2] == self.canvas_size:
            self.resumed = len(self.boxes)
            progress.done += self.progress_units()
            progress.baseline += self.progress_units()
            x1 = resize(canvas, *self.x1_size)
            box = Box(0, 0, *self.x1_size)
            yield PlanEvent(self.x1_size, (box,), (0,), self.role.stage, to_output, tiles=True)
            yield WindowFinished(0, box, x1, self.role.stage, to_output, resumed=True)
            yield LogEvent("info", f"{self.role.label} was finished by an earlier run: its result is reused")
        else:
            x1 = resize((yield from self._tiles(rgb, store, progress, cancel)), *self.x1_size)
        self.x1 = make_gray(x1) if monochrome else x1
        self.seconds = time.perf_counter() - started
        return self._stage2_inputs(self.x1, fill)

    def _store(self, resume) -> Generator[Event, None, Optional[TileStore]]:
        if resume is None:
            return None
        layout = layout_digest(self.boxes, self.tile_spec, self.network.name, self.canvas_size)
        try:
            store, warning = TileStore.open(resume.directory / self.role.stage, resume.fingerprint, layout)
        except OSError as exc:
            yield LogEvent("warning", f"the progress of {self.role.label} cannot be saved ({exc.strerror or exc}); "
                                      "the run goes on")
            return None
        if warning and not resume.replaced:  # else the resume state said so already
            yield LogEvent("warning", warning)
        return store

    def _tiles(self, rgb, store, progress, cancel) -> Generator[Event, None, np.ndarray]:
        """The network over the tiles (those finished by an earlier run reused): its result on the
        16-bit grid, kept in the resume state."""
        done = store.done_tiles() if store is not None else {}
        self.resumed = len(done)
        progress.done += len(done) * self.units
        progress.baseline += len(done) * self.units
        if done:
            yield LogEvent("info", f"resuming {self.role.label}: {len(done)} of {len(self.boxes)} tiles were "
                                   "already finished")
            yield progress.event()  # progress starts where the earlier run stopped
        warnings: list[str] = []

        def keep(index: int, output: np.ndarray) -> None:
            self.tiles_computed += 1
            warning = store.try_save_tile(index, output) if store is not None else None
            if warning:
                warnings.append(warning)

        spec = self.tile_spec
        raw = yield from run_tiles(self.network, rgb, spec, device=self.device, cancel=cancel, stage=self.role.stage,
                                   progress=progress, done=done, on_tile=keep,
                                   scale_to_output=self.scale / spec.scale, units_per_tile=self.units)
        for warning in warnings[:1]:
            yield LogEvent("warning", warning)
        canvas = quantize(raw)
        if store is not None:
            warning = store.try_save_result(canvas)
            if warning:
                yield LogEvent("warning", warning)
        return canvas

    def _stage2_inputs(self, x1: np.ndarray, fill: Optional[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
        k = self.soft.k
        hp, wp = self.padded_size
        photo = area_downsample(reflect_pad(x1, hp, wp), hp // k, wp // k)
        if photo is x1:
            photo = x1.copy()  # stage 2 turns its photo into [-1, 1] in place: x1 stays [0, 1]
        mask = None
        if fill is not None:
            r = self.out_scale
            big = fill.repeat(r, axis=0).repeat(r, axis=1) if r > 1 else fill
            big = reflect_pad(big, hp, wp)
            mask = big.reshape(hp // k, k, wp // k, k).any(axis=(1, 3))
        return photo, mask

    def warm_start(self, padded_height: int, padded_width: int, schedule, device, dtype):
        """The fast preset's start: x1 (padded to the stage-2 canvas / q) noised to the schedule's
        first step, each window from its own generator (engine.tiling.hir.warm_start)."""
        from engine.tiling.hir import warm_start

        q = self.q
        base = reflect_pad(self.x1, padded_height // q, padded_width // q)
        x = torch.from_numpy(np.ascontiguousarray(base)).permute(2, 0, 1)[None].mul(2.0).sub_(1.0)
        return warm_start(x, q, schedule, device, dtype)

    # -- after ---------------------------------------------------------------------------------------
    def report(self, result: np.ndarray) -> dict[str, Any]:
        """What the run report adds (the role's fields); without stage 2, the model that made the
        result is the pre-stage's network."""
        fields = self.role.report(self, result)
        if not self.needs_stage2:
            fields.update(model=self.network.name, is_random_model=self.network.is_random)
        return fields
