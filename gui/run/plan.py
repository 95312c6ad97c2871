"""What a run will be, before it starts: the task settings, their problems, a duration estimate
and the engine request. No Qt; only the estimate imports the engine (and torch): it asks the
engine's own plan (engine.tiling.run_plan) which windows the run will solve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple, Optional

import numpy as np

from engine.request import DEFAULT_CLASSIFIER, DEFAULT_FIDELITY

TEST_TINY = "test-tiny"
TEST_TINY_LABEL = "test-tiny (random weights, for testing only)"
UPSCALE_FACTORS = (1, 2, 4, 8)
#: The fast upscale: ResShift's real-world ×4 model (and its autoencoder), a catalog id.
FAST_UPSCALER = "resshift-realsr-x4"
FAST_UPSCALE_LABEL = "Fast (4 steps)"
#: Largest result the image I/O will write back (engine.image_io.DEFAULT_MAX_PIXELS).
MAX_OUTPUT_PIXELS = 400_000_000
#: The app's result preview, per output pixel: float RGB (12 bytes) and its display layer (BGRA
#: with its pyramid, 5.3 bytes).
PREVIEW_BYTES_PER_OUTPUT_PIXEL = 18
#: Remove-noise strength 100 means this σ_y (pixel units, [0, 1] range): heavy film grain.
MAX_NOISE_SIGMA = 0.2


class QualityPreset(NamedTuple):
    steps: int
    travel_length: int  # RePaint time travel L (1 = off)
    travel_repeat: int  # r


#: The one place the quality presets are defined.
QUALITY_PRESETS: dict[str, QualityPreset] = {
    "Fast": QualityPreset(25, 1, 1),
    "Balanced": QualityPreset(100, 1, 1),
    "Best": QualityPreset(100, 10, 3),
}
CUSTOM = "Custom"


@dataclass
class TaskSettings:
    """Everything the task panel holds. Defaults that the engine also has come from RestoreRequest."""

    inpaint: bool = False
    colorize: bool = False
    upscale: int = 1
    denoise: bool = False
    denoise_strength: int = 30  # 0..100 -> σ_y = strength / 100 · MAX_NOISE_SIGMA
    deblur: bool = False
    deblur_sigma: float = 2.0
    model: str = TEST_TINY
    quality: str = "Balanced"
    steps: int = 100
    travel_length: int = 1
    travel_repeat: int = 1
    eta: float = 0.85
    sigma_y: float = 0.0  # advanced override of the noise σ_y (0 = from Remove noise)
    seed: int = 1234
    hir: str = "auto"  # auto | on | off
    window: int = 256
    overlap: int = 128
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (engine.device.pick_precision)
    compile: bool = False  # torch.compile the network (one-time compile per machine, cached)
    device: str = "auto"
    class_label: int = -1  # ImageNet class for class-conditional models (-1: the model takes none)
    guidance_scale: float = 0.0  # classifier guidance (class-conditional models only)
    classifier: str = DEFAULT_CLASSIFIER  # the ADM classifier guidance uses (a catalog or imported id)
    cleanup: bool = False  # Clean up unknown damage: two stages (engine/cleanup, gui/run/cleanup_plan.py)
    cleanup_model: str = ""  # the installed clean-up network (catalog or imported id)
    cleanup_scale: int = 1  # its scale, for the time estimate
    fidelity: float = DEFAULT_FIDELITY  # 1 = the cleaned photo ... 0 = realness
    warm_start: bool = False  # fast: stage 2 starts from the cleaned photo
    fast_upscale: bool = False  # upscale with FAST_UPSCALER (the model then only fills or colorizes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TaskSettings":
        """Tolerant of missing, unknown or mistyped keys (settings from older versions)."""
        out = cls()
        for f in fields(cls):
            if data and f.name in data:
                default = getattr(out, f.name)
                try:
                    value = type(default)(data[f.name]) if not isinstance(default, bool) else bool(data[f.name])
                except (TypeError, ValueError):
                    continue
                setattr(out, f.name, value)
        if out.upscale not in UPSCALE_FACTORS:
            out.upscale = 1
        if out.quality not in QUALITY_PRESETS and out.quality != CUSTOM:
            out.quality = "Balanced"
        return out

    def apply_preset(self, name: str) -> None:
        preset = QUALITY_PRESETS[name]
        self.quality = name
        self.steps, self.travel_length, self.travel_repeat = preset

    def matching_preset(self) -> str:
        for name, preset in QUALITY_PRESETS.items():
            if (self.steps, self.travel_length, self.travel_repeat) == tuple(preset):
                return name
        return CUSTOM

    @property
    def noise_sigma(self) -> float:
        if self.sigma_y > 0:
            return float(self.sigma_y)
        return self.denoise_strength / 100.0 * MAX_NOISE_SIGMA if self.denoise else 0.0

    def any_task(self) -> bool:
        return self.inpaint or self.colorize or self.upscale > 1 or self.deblur or self.noise_sigma > 0 or self.cleanup

    @property
    def uses_fast_upscale(self) -> bool:
        return self.fast_upscale and self.upscale > 1

    def engine_part(self) -> "TaskSettings":
        """What the diffusion engine does: everything, or with the fast upscale what is left (at
        the upscaled size)."""
        from dataclasses import replace

        return replace(self, upscale=1, fast_upscale=False) if self.uses_fast_upscale else self


#: Window sides must be multiples of this (the networks downsample 5 times), as in the engine.
NETWORK_MULTIPLE = 32


def effective_window(window: int, align: int) -> int:
    """The engine's rule (engine.tiling.window_plan.effective_window), without importing the engine's
    tiling package (it imports torch): the largest multiple of lcm(align, 32) ≤ ``window``, or 0."""
    block = math.lcm(align, NETWORK_MULTIPLE)
    return (window // block) * block


#: test-tiny: seconds per denoiser call on one 256² window on the CPU. From the 2-core build
#: machine (shared, so timings vary a lot): ``python -m engine bench --config tiny --device cpu
#: --size 256 --window 256 --steps 2 --batch 1 --latency 1 --skip-baseline --unet-iters 2`` gave
#: about 500 ms per call in the QA pass (3544 ms in a rerun while another job kept both cores
#: busy), and the app restoring 768×512 ×2 (77 windows × 4 steps = 308 window-calls, batched by
#: the engine) took 89 s, 0.29 s each. The bench figure is kept: an estimate had better be long.
TEST_TINY_CPU_SECONDS = 0.5
#: test-tiny on a GPU: launch-bound, not measured (the build machine has no GPU).
TEST_TINY_GPU_SECONDS = 0.02


def seconds_per_call(device: str, model: str, window: int, precision: str, cpu_native_bf16: bool = False) -> float:
    """Rough seconds of one denoiser call on one window (ADM-256 ≈ 2.2 TFLOP at 256 px).
    On the CPU, bf16 (explicit, or ``auto`` on a CPU with native bf16) runs about 4× faster."""
    area = (window / 256.0) ** 2
    on_cpu = device == "cpu" or device == "" or device.startswith("cpu")
    if model.startswith("test-tiny"):
        return (TEST_TINY_CPU_SECONDS if on_cpu else TEST_TINY_GPU_SECONDS) * area
    if on_cpu:
        bf16 = precision == "bf16" or (precision == "auto" and cpu_native_bf16)
        return (2.5 if bf16 else 10.0) * area
    per_call = 0.09 if precision == "fp32" else 0.045
    return per_call * area


class Estimate(NamedTuple):
    windows: int
    calls: int  # window-steps: one window through the network once
    seconds: float
    measured: bool  # from the speed of earlier runs on this computer (else a rough guess)
    before: str = ""  # the network that runs before the engine, in words ("the fast upscale")


#: The fast upscale's work (docs/resshift.md): TFLOP per output megapixel of a tile besides the
#: autoencoder's attention over the whole tile (2 · 2048 · T⁴ FLOP for a T-px tile), and the tile and
#: overlap it runs with (engine.resshift.upscaler).
FAST_UPSCALE_TFLOP_PER_MP, FAST_UPSCALE_TILE, FAST_UPSCALE_OVERLAP = 19.6, 256, 64
#: Its FLOP rate relative to the ADM-256's (whose seconds per call, seconds_per_call, are for 2.2 TFLOP):
#: measured side by side on the CPU by `bench --upscalers` (docs/benchmarks.md).
ENGINE_TFLOP_PER_CALL, FAST_UPSCALE_RELATIVE_RATE = 2.2, 0.7


def fast_upscale_seconds(settings: TaskSettings, image_size: tuple[int, int], device_kind: str,
                         cpu_native_bf16: bool = False) -> float:
    """ResShift ×4 of a photo of ``image_size``: its tiles' FLOPs over its rate on the device."""

    def tiles_along(length: int) -> tuple[int, int]:  # (count, side), as engine.tiling.blended plans them
        padded = -(-length // 64) * 64
        side = min(FAST_UPSCALE_TILE, padded)
        return (1 if side >= padded else 1 + -(-(padded - side) // (side - FAST_UPSCALE_OVERLAP))), side

    (rows, th), (cols, tw) = tiles_along(image_size[0]), tiles_along(image_size[1])
    per_tile = 16 * th * tw / 1e6 * FAST_UPSCALE_TFLOP_PER_MP + 2 * 2048 * (th * tw) ** 2 / 1e12
    engine_rate = ENGINE_TFLOP_PER_CALL / seconds_per_call(device_kind, "adm", 256, settings.precision,
                                                          cpu_native_bf16)
    return rows * cols * per_tile / (FAST_UPSCALE_RELATIVE_RATE * engine_rate)


def estimate_run(settings: TaskSettings, image_size: tuple[int, int], device_kind: str,
                 cpu_native_bf16: bool = False, measured: Any = None) -> Estimate:
    """The run's windows and window-steps, as the engine plans them (engine.tiling.run_plan: this
    imports the engine, i.e. torch), and its duration: ``measured`` (a gui.run.speed.Speed: seconds
    per window-step and a run's overhead, from earlier runs) or else a rough guess per device. The
    networks that run before the engine (the fast upscale, a clean-up network's stage 1) add their
    own rough guesses."""
    from engine.tiling.run_plan import plan_run
    from gui.run.cleanup_plan import stage1_seconds, stage2_runs, stage2_settings

    before, first = 0.0, ""
    if settings.uses_fast_upscale:  # ResShift first, then the engine on its result for what is left
        before, first = fast_upscale_seconds(settings, image_size, device_kind, cpu_native_bf16), "the fast upscale"
        image_size = (image_size[0] * settings.upscale, image_size[1] * settings.upscale)
        settings = settings.engine_part()
        if not settings.any_task():
            return Estimate(0, 0, before, False, first)
    if settings.cleanup:
        before, first = before + stage1_seconds(settings, image_size, device_kind), "the clean-up network"
    if not stage2_runs(settings):
        return Estimate(0, 0, before, False, first)
    settings = stage2_settings(settings)  # what stage 2 of a two-stage run does (itself otherwise)
    stages = plan_run(planning_request(settings), *image_size)
    if measured is not None:
        seconds = measured.overhead + stages.calls * measured.seconds_per_call
    else:
        seconds = stages.calls * seconds_per_call(device_kind, settings.model, settings.window, settings.precision,
                                                  cpu_native_bf16)
    return Estimate(stages.windows, stages.calls, seconds + before, measured is not None, first)


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def format_clock(seconds: float) -> str:
    """Elapsed time as a clock: 0:42, 12:05, 1:02:09."""
    whole = int(max(seconds, 0))
    hours, minutes, secs = whole // 3600, whole // 60 % 60, whole % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe_estimate(est: Estimate, device_kind: str) -> str:
    """The line the panel shows before a run."""
    device = device_kind.upper().split(":")[0]
    work = f"{est.windows} window{'s' * (est.windows != 1)} × {est.calls // max(est.windows, 1)} steps on {device}"
    if est.before:
        work = f"{est.before}, then {work}" if est.windows else f"{est.before} on {device}"
    source = "at the speed measured here" if est.measured else "a rough guess until a first run measures this computer"
    if est.before and est.measured:
        source = f"{source}; {est.before}: a rough guess"
    return f"Estimated time: {format_duration(est.seconds)} ({work}; {source})"


#: What the engine's stages are, in the words the panel shows (other stages show their own name).
STAGE_WORDS = {
    "loading image": "reading the photo",
    "loading model": "loading the model",
    "restoring": "restoring the photo, window by window",
    "cleaning up (stage 1)": "stage 1: the clean-up network removes the damage, tile by tile",
    "restoring (stage 2)": "stage 2: the diffusion model restores the cleaned photo, window by window",
    "upscaling": "the fast upscale (ResShift ×4), tile by tile",
    "HiR phase 1/2: global structure": "pass 1 of 2, the whole photo small: overall shapes and colours",
    "HiR phase 2/2: full-size detail": "pass 2 of 2, full size: the detail",
}
#: What the stage line says when the user hovers over it.
STAGES_EXPLAINED = ("A run has three steps: it reads the photo, loads the model, then restores the photo window "
                    "by window. A large photo is restored in two passes: first the whole photo at a small size, "
                    "so large shapes and colours agree across windows, then at full size for the detail. With "
                    "Clean up unknown damage, a clean-up network first cleans the photo tile by tile (stage 1); "
                    "with Fast (4 steps), ResShift first upscales it tile by tile.")


def describe_stage(name: str, index: int, total: int) -> str:
    """The engine's stage ``name`` (``index`` of ``total``) in words: "Step 3 of 3: restoring …"."""
    words = STAGE_WORDS.get(name, name)
    if name.startswith("HiR phase"):  # a pass within step 3: its words say which
        return words[:1].upper() + words[1:]
    return f"Step {index + 1} of {total}: {words}" if total > 1 else words[:1].upper() + words[1:]


def describe_progress(done: int, total: int, elapsed: float, eta: Optional[float]) -> str:
    """The line that replaces the estimate while a run goes."""
    steps = f"{done} of {total} window-steps, {format_clock(elapsed)} so far"
    return f"{format_duration(eta).capitalize()} left ({steps})" if eta is not None else f"Working… ({steps})"


def find_problems(
    settings: TaskSettings, image_size: Optional[tuple[int, int]], has_mask: bool, model_exists: bool = True
) -> list[str]:
    """Reasons this combination cannot run (empty list = ready). Each is a sentence for the user."""
    problems: list[str] = []
    if not image_size or not image_size[0]:
        return ["Open a photo first (File ▸ Open, drag and drop, or paste)."]
    if not settings.any_task():
        problems.append("Tick at least one task: fill, colorize, upscale, remove noise, deblur or clean up.")
    if settings.cleanup and not settings.cleanup_model:
        problems.append("Clean up needs a clean-up network: choose Get more… to download or import one.")
    if settings.inpaint and not has_mask:
        problems.append("Fill masked areas needs a mask: paint over the damage first.")
    if not model_exists:
        problems.append(f"The model {settings.model!r} is not installed: pick another one or open Models….")
    if not 0 <= settings.overlap < settings.window:
        problems.append(f"Window overlap ({settings.overlap}) must be smaller than the window ({settings.window}).")
    if settings.uses_fast_upscale and (settings.deblur or settings.noise_sigma > 0):
        problems.append(f"{FAST_UPSCALE_LABEL} upscaling removes blur and noise itself: untick Deblur and Remove "
                        "noise, or untick Fast.")
    if settings.uses_fast_upscale and settings.cleanup:
        problems.append(f"{FAST_UPSCALE_LABEL} upscaling removes real-world damage itself: untick Clean up unknown "
                        "damage, or untick Fast.")
    engine_sr = settings.engine_part().upscale
    if engine_sr > 1 and effective_window(settings.window, engine_sr) <= 0:
        problems.append(
            f"Upscale ×{settings.upscale} needs a model window of at least "
            f"{math.lcm(settings.upscale, NETWORK_MULTIPLE)} px; this model's window is {settings.window} px."
        )
    h, w = image_size
    if h * w * settings.upscale**2 > MAX_OUTPUT_PIXELS:
        problems.append(
            f"The result would be {w * settings.upscale}×{h * settings.upscale} pixels, over the "
            f"{MAX_OUTPUT_PIXELS // 1_000_000}-megapixel limit: choose a smaller upscale."
        )
    if settings.deblur and settings.deblur_sigma <= 0:
        problems.append("Deblur needs a blur size (σ) above 0.")
    return problems


#: A photo whose chroma spreads this much across the line of one hue has colours of its own (see
#: has_colours). Measured on the shared test photos (old_photos, kodak): black-and-white and toned
#: prints 0 to 2.2/255, colour photos 3.4 to 20/255, except three with one dominant hue (2.4 to
#: 2.6/255), which get no hint: a missing hint is better than a wrong one on every sepia print.
COLOUR_SPREAD = 3 / 255


def has_colours(pixels: np.ndarray) -> bool:
    """Whether an (H, W, 3) [0, 1] photo has colours of its own, as opposed to black and white or
    toned (sepia, cyanotype: one hue of varying strength). The chroma (Cb, Cr) of a toned photo
    lies along one line through gray; ``COLOUR_SPREAD`` bounds the spread across that line (the
    minor axis of the chroma's second moments, on a sample of at most about 250 000 pixels)."""
    step = max(1, math.isqrt(pixels.shape[0] * pixels.shape[1] // 250_000))
    r, g, b = (pixels[::step, ::step, c].astype(np.float64).ravel() for c in range(3))
    chroma = np.stack([-0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b])
    minor = np.linalg.eigvalsh(chroma @ chroma.T / chroma.shape[1])[0]
    return math.sqrt(max(minor, 0.0)) > COLOUR_SPREAD


def find_notes(settings: TaskSettings, image_size: Optional[tuple[int, int]], colours: bool = False) -> list[str]:
    """Things worth knowing that do not stop a run (``colours``: whether the photo has colours, see has_colours)."""
    notes = []
    if settings.colorize and colours:
        notes.append("This looks like a colour photo: Colorize replaces its colours.")
    if settings.uses_fast_upscale:
        notes.append(f"{FAST_UPSCALE_LABEL} uses ResShift: non-commercial use only.")
    engine = settings.engine_part()
    if not engine.any_task():
        return notes
    if settings.model.startswith(TEST_TINY):
        notes.append("test-tiny has random weights: its output is noise. It only tests the machinery.")
    if image_size and image_size[0] and max(image_size) * settings.upscale < settings.window:
        notes.append(f"The photo is smaller than one {settings.window}-px window; it is padded for the run.")
    return notes


def check_memory(request) -> None:
    """Raise engine.errors.InputError, saying how much memory it needs, when a run of ``request``
    would not fit in the memory available: the engine's need and the app's result preview (made
    before the run starts, so it is checked first)."""
    from engine.host_memory import check_fits, fast_upscale_bytes_per_input_pixel, restore_bytes_per_input_pixel

    h, w = request.image.shape[:2]
    sr = request.tasks.sr
    engine = restore_bytes_per_input_pixel(request.tasks)
    if request.upscaler:  # the upscale's canvas, then the engine's part at the upscaled size
        from engine.request import Tasks

        rest = Tasks(inpaint=request.tasks.inpaint, colorize=request.tasks.colorize)
        engine = fast_upscale_bytes_per_input_pixel(sr)
        engine += sr**2 * restore_bytes_per_input_pixel(rest) if rest.any() else 0
    check_fits(w, h, engine + sr**2 * PREVIEW_BYTES_PER_OUTPUT_PIXEL)


def planning_request(settings: TaskSettings):
    """The engine's RestoreRequest for ``settings`` without a photo: what a plan needs (no pixels)."""
    return build_request(settings, _NO_PIXELS, _NO_PIXELS if settings.inpaint else None)


_NO_PIXELS = np.zeros((1, 1), np.uint8)


def build_request(settings: TaskSettings, image: np.ndarray, mask: Optional[np.ndarray]):
    """The engine's RestoreRequest for the current photo (H, W, 3) float32 [0, 1] and mask (H, W) uint8."""
    from engine.request import RestoreRequest, Tasks

    cleanup = settings.cleanup_model if settings.cleanup else None  # its network removes noise and blur
    tasks = Tasks(
        inpaint=settings.inpaint,
        colorize=settings.colorize,
        sr=int(settings.upscale),
        deblur=f"gauss:{settings.deblur_sigma:g}" if settings.deblur and not cleanup else None,
        noise=0.0 if cleanup else settings.noise_sigma,
    )
    return RestoreRequest(
        image=image,
        tasks=tasks,
        mask=mask if settings.inpaint else None,
        model=settings.model,
        steps=int(settings.steps),
        travel_length=int(settings.travel_length),
        travel_repeat=int(settings.travel_repeat),
        eta=float(settings.eta),
        seed=int(settings.seed),
        device=settings.device or "auto",
        precision=settings.precision,  # type: ignore[arg-type]
        compile=bool(settings.compile),
        hir={"auto": None, "on": True, "off": False}.get(settings.hir),
        window=int(settings.window),
        overlap=int(settings.overlap),
        class_label=None if settings.class_label < 0 else int(settings.class_label),
        guidance_scale=float(settings.guidance_scale) if settings.class_label >= 0 else 0.0,
        classifier=settings.classifier,
        cleanup=cleanup,
        fidelity=float(settings.fidelity),
        warm_start=bool(settings.warm_start and cleanup),
        upscaler=FAST_UPSCALER if settings.uses_fast_upscale else None,
    )
