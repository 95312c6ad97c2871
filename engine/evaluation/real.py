"""``evaluate --task real``: two-stage restoration (engine/cleanup) measured on realistic damage.

Each clean photo (centre square, ``--size``) is degraded reproducibly, the way old scans and web
copies are, with every random choice drawn from ``numpy.random.default_rng(seed + 7919·i)`` for
photo i (:func:`degrade_real`):

1. a soft lens: Gaussian blur, σ uniform in [0.5, 1.5] px;
2. downscaling by ``--real-scale`` (area average; none at 1);
3. grain: Gaussian noise, σ uniform in [2, 8] / 255 per pixel and channel;
4. JPEG compression, quality uniform in 40…80 (Pillow, 4:2:0 chroma).

The degraded photo is then restored ×scale and compared with the clean one (PSNR, SSIM on [0, 1]):
the degraded photo itself (bicubic upscaling), stage 1 alone (the clean-up network; its result
upscaled bicubically where it is smaller than the output), and stage 1 + 2 at each ``--fidelity``
value (the whole pipeline, as the app runs it).
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import numpy as np
from PIL import Image, ImageFilter

from engine.errors import InputError
from engine.evaluation.evaluate import _json_safe, bicubic_upscale, clean_images, table_number, to_tensor
from engine.evaluation.metrics import psnr, ssim
from engine.request import RestoreRequest, Tasks

BLUR_SIGMA = (0.5, 1.5)
NOISE_SIGMA = (2 / 255, 8 / 255)
JPEG_QUALITY = (40, 80)
DEGRADED, STAGE1 = "degraded (bicubic)", "stage 1 alone"


@dataclass(frozen=True)
class RealEvalConfig:
    data: str
    cleanup: str  # the stage-1 network (catalog id or file)
    model: str = "adm-256-uncond"  # stage 2: catalog id | checkpoint | test-tiny | oracle
    fidelities: tuple[float, ...] = (0.25, 0.5, 0.75)
    scale: int = 2  # the degradation's downscale = the restoration's upscale
    limit: Optional[int] = None
    size: int = 256
    steps: int = 100
    eta: float = 0.85
    seed: int = 1234
    device: str = "auto"
    window: int = 256


@dataclass
class RealResult:
    image: str
    variant: str  # DEGRADED, STAGE1 or "F=0.50"
    psnr: float
    ssim: float
    seconds: float
    consistency: Optional[float] = None  # stage 2 with the soft observation
    change_from_stage1: Optional[float] = None
    degradation: dict = field(default_factory=dict)


def degrade_real(clean: np.ndarray, scale: int, seed: int) -> tuple[np.ndarray, dict]:
    """(h, w, 3) float32 [0, 1] -> (h/scale, w/scale, 3) float32 [0, 1] degraded as the module doc
    says, and the parameters drawn."""
    rng = np.random.default_rng(seed)
    blur = float(rng.uniform(*BLUR_SIGMA))
    noise = float(rng.uniform(*NOISE_SIGMA))
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    h, w = clean.shape[:2]
    if h % scale or w % scale:
        raise InputError(f"--size must be a multiple of --real-scale {scale}")
    pil = Image.fromarray(np.round(np.clip(clean, 0, 1) * 255).astype(np.uint8))
    soft = np.asarray(pil.filter(ImageFilter.GaussianBlur(blur)), np.float32) / 255
    if scale > 1:
        soft = soft.reshape(h // scale, scale, w // scale, scale, 3).mean(axis=(1, 3))
    noisy = np.clip(soft + noise * rng.standard_normal(soft.shape), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray(np.round(noisy * 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality, subsampling=2)
    degraded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), np.float32) / 255
    return degraded, {"blur_sigma": round(blur, 4), "noise_sigma": round(noise, 5), "jpeg_quality": quality,
                      "scale": scale}


def stage1_only(photo: np.ndarray, config: RealEvalConfig) -> np.ndarray:
    """The clean-up network alone on ``photo``, at the output size (bicubic for what it lacks)."""
    from engine.cleanup.stage import PreStage
    from engine.device import pick_device, pick_precision
    from engine.tiling.msr import Progress

    device = pick_device(config.device)
    request = RestoreRequest(image=photo, tasks=Tasks(sr=config.scale), cleanup=config.cleanup, fidelity=1.0,
                             device=config.device, precision=pick_precision("auto", device))
    stage = PreStage.load(request, device)
    stage.plan(request, photo.shape[:2])
    run = stage.run(photo, None, False, Progress(total=stage.progress_units()), None, None)
    for _event in run:
        pass
    return bicubic_upscale(stage.x1, stage.q) if stage.q > 1 else stage.x1


def two_stages(photo: np.ndarray, clean: np.ndarray, fidelity: float,
               config: RealEvalConfig) -> tuple[np.ndarray, dict]:
    """The whole pipeline (stage 1 + 2) at ``fidelity``; with the oracle as stage 2's prior."""
    from engine.pipeline import run_to_completion

    oracle = config.model == "oracle"
    request = RestoreRequest(image=photo, tasks=Tasks(sr=config.scale), cleanup=config.cleanup, fidelity=fidelity,
                             model="test-tiny" if oracle else config.model, steps=config.steps, eta=config.eta,
                             seed=config.seed, device=config.device, window=config.window,
                             overlap=config.window // 2, tiling="none" if oracle else "auto")
    denoiser = None
    if oracle:
        from engine.device import pick_device
        from engine.samplers import OracleDenoiser

        denoiser = OracleDenoiser(to_tensor(clean, pick_device(config.device)))
    finished = run_to_completion(request, denoiser=denoiser)
    return finished.result, dict(finished.report)


def evaluate_real(config: RealEvalConfig, warn: Callable[[str], None] = lambda _m: None) -> Iterator[RealResult]:
    """One result per (photo, variant), photo-major."""
    if config.model == "oracle" and config.size % 32:
        raise InputError(f"with the oracle denoiser --size must be a multiple of 32, got {config.size}")
    for index, (name, clean) in enumerate(clean_images(config.data, config.size, config.limit, warn)):
        photo, params = degrade_real(clean, config.scale, config.seed + 7919 * index)
        start = time.perf_counter()
        baseline = bicubic_upscale(photo, config.scale) if config.scale > 1 else photo
        yield RealResult(name, DEGRADED, psnr(baseline, clean), ssim(baseline, clean), time.perf_counter() - start,
                         degradation=params)
        start = time.perf_counter()
        x1 = stage1_only(photo, config)
        yield RealResult(name, STAGE1, psnr(x1, clean), ssim(x1, clean), time.perf_counter() - start,
                         degradation=params)
        for fidelity in config.fidelities:
            start = time.perf_counter()
            result, report = two_stages(photo, clean, fidelity, config)
            result = np.clip(result, 0, 1)
            yield RealResult(name, f"F={fidelity:.2f}", psnr(result, clean), ssim(result, clean),
                             time.perf_counter() - start, report.get("consistency"), report.get("change_from_stage1"),
                             degradation=params)


def summarize_real(results: list[RealResult]) -> dict[str, dict[str, Optional[float]]]:
    out: dict[str, dict[str, Optional[float]]] = {}
    for variant in dict.fromkeys(r.variant for r in results):
        rows = [r for r in results if r.variant == variant]
        means: dict[str, Optional[float]] = {"images": len(rows)}
        for key in ("psnr", "ssim", "seconds", "consistency", "change_from_stage1"):
            values = [getattr(r, key) for r in rows if getattr(r, key) is not None]
            means[key] = float(np.mean(values)) if values else None
        out[variant] = means
    return out


def format_real_table(results: list[RealResult]) -> str:
    f = table_number
    lines = [f"{'variant':<20} {'n':>3} {'PSNR':>7} {'SSIM':>6} {'consist.':>9} {'Δ stage 1':>9} {'s/img':>7}"]
    for variant, m in summarize_real(results).items():
        lines.append(f"{variant:<20} {m['images']:>3} {f(m['psnr'], 2):>7} {f(m['ssim'], 4):>6} "
                     f"{f(m['consistency'], 4):>9} {f(m['change_from_stage1'], 4):>9} {f(m['seconds'], 2):>7}")
    return "\n".join(lines)


def write_real_report(path: Union[str, Path], config: RealEvalConfig, results: list[RealResult],
                      complete: bool = True) -> Path:
    """JSON (config, degradation of each photo, rows, means per variant) or CSV (rows), by extension."""
    path = Path(path)
    rows = [asdict(r) for r in results]
    if path.suffix.lower() == ".csv":
        keys = ["image", "variant", "psnr", "ssim", "consistency", "change_from_stage1", "seconds"]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if row[k] is None else row[k]) for k in keys})
    elif path.suffix.lower() == ".json":
        doc = {"complete": complete, "config": asdict(config), "results": rows, "mean": summarize_real(results)}
        path.write_text(json.dumps(_json_safe(doc), indent=2, default=str), encoding="utf-8")
    else:
        raise InputError(f"report must end in .json or .csv, got {path.name}")
    return path
