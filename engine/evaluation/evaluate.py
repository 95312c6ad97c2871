"""Honest numbers for restorations: degrade clean photos with a task's operator, restore the
degraded observation exactly as the app would (the observation *is* the user's photo), and
measure PSNR / SSIM (on [0, 1] images) and data consistency ‖A x − y‖/‖y‖, beside the baselines
A†y and (for super-resolution) bicubic upscaling.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import torch
from PIL import Image

from engine.errors import InputError
from engine.evaluation.masks import make_mask
from engine.evaluation.metrics import consistency, psnr, ssim
from engine.request import RestoreRequest, Tasks

TASKS = ("inpaint", "colorize", "sr4", "sr2", "deblur", "old-photo", "denoise")
METRIC_KEYS = ("psnr", "ssim", "consistency", "baseline_psnr", "baseline_ssim", "bicubic_psnr", "bicubic_ssim", "seconds")


@dataclass(frozen=True)
class EvalConfig:
    data: str
    tasks: tuple[str, ...]
    model: str = "adm-256-uncond"  # catalog id | checkpoint path | test-tiny | oracle
    limit: Optional[int] = None
    noise: float = 0.0  # σ_y in [0, 1] pixel units added to the observation
    mask: str = "boxes"  # boxes | strokes | mask file (inpaint, old-photo)
    mask_seed: int = 0
    steps: int = 100
    size: int = 256
    blur: str = "gauss:3"  # the deblur task's kernel
    sr_kernel: str = "avgpool"
    eta: float = 0.85
    seed: int = 1234
    device: str = "auto"
    window: int = 256  # the pipeline's MSR window (the model's native size)


@dataclass
class ImageResult:
    image: str
    task: str
    psnr: float
    ssim: float
    consistency: float
    baseline_psnr: float
    baseline_ssim: float
    bicubic_psnr: Optional[float]
    bicubic_ssim: Optional[float]
    seconds: float
    report: dict = field(default_factory=dict)


def task_spec(task: str, noise: float, blur: str, sr_kernel: str) -> Tasks:
    """The request's Tasks for an evaluation task name (old-photo = mask ∘ gray ∘ pool×2, as DDNM)."""
    common = {"noise": float(noise), "sr_kernel": sr_kernel}
    table = {
        "inpaint": Tasks(inpaint=True, **common),
        "colorize": Tasks(colorize=True, **common),
        "sr4": Tasks(sr=4, **common),
        "sr2": Tasks(sr=2, **common),
        "deblur": Tasks(deblur=blur, **common),
        "old-photo": Tasks(inpaint=True, colorize=True, sr=2, **common),
        "denoise": Tasks(**common),
    }
    if task not in table:
        raise InputError(f"unknown evaluation task {task!r}; choose from {', '.join(TASKS)}")
    if task == "denoise" and noise <= 0:
        raise InputError("the denoise task needs --noise > 0 (the noise level to add and remove)")
    return table[task]


def _ignore(message: str) -> None:
    pass


def evaluation_photos(folder: Union[str, Path]) -> list[Path]:
    """The photos of an evaluation folder: its images, except those with 'mask' in the name."""
    from engine.training.data import find_images

    return [p for p in find_images(folder, what="evaluation data folder") if "mask" not in p.stem.lower()]


def planned_results(config: EvalConfig) -> int:
    """How many (photo, task) results a whole run gives: photos found (up to --limit) × tasks. A
    photo that turns out unreadable is skipped, so a complete run can give fewer."""
    photos = len(evaluation_photos(config.data))
    return min(photos, config.limit or photos) * len(config.tasks)


def clean_images(folder: Union[str, Path], size: int, limit: Optional[int],
                 warn: Callable[[str], None] = _ignore) -> Iterator[tuple[str, np.ndarray]]:
    """(name, (size, size, 3) float32 in [0, 1]) for each image: centre square crop, then resize.
    An unreadable file is skipped with a ``warn`` message; ``limit`` counts the readable ones."""
    from engine.image_io import load_image

    files = evaluation_photos(folder)
    if not files:
        raise InputError(f"no images to evaluate in {folder}")
    used = 0
    for path in files:
        if limit and used >= limit:
            return
        try:
            rgb = load_image(path).rgb
        except InputError as exc:
            warn(f"skipped {path.name}: {exc}")
            continue
        used += 1
        h, w = rgb.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = rgb[top : top + side, left : left + side]
        if side != size:
            pil = Image.fromarray(np.round(square * 255).astype(np.uint8))
            square = np.asarray(pil.resize((size, size), Image.BICUBIC if side < size else Image.LANCZOS), np.float32) / 255
        yield path.name, np.ascontiguousarray(square, dtype=np.float32)
    if not used:
        raise InputError(f"none of the images in {folder} could be read")


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, C) [0, 1] -> (1, C, H, W) [-1, 1] float32."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device, torch.float32) * 2 - 1


def to_image(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) [-1, 1] -> (H, W, 3) float32 [0, 1], clipped; one channel is repeated."""
    x = x.detach().float().cpu()[0]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return ((x.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1).astype(np.float32)


def bicubic_upscale(photo: np.ndarray, factor: int) -> np.ndarray:
    """(h, w, 3) [0, 1] -> (h·factor, w·factor, 3), bicubic, clipped."""
    h, w = photo.shape[:2]
    channels = [np.asarray(Image.fromarray(photo[..., c].astype(np.float32), "F").resize((w * factor, h * factor), Image.BICUBIC)) for c in range(3)]
    return np.stack(channels, -1).clip(0, 1).astype(np.float32)


RestoreFn = Callable[[RestoreRequest, np.ndarray], tuple[np.ndarray, dict]]


def pipeline_restore(request: RestoreRequest, clean: np.ndarray, denoiser: Any = None) -> tuple[np.ndarray, dict]:
    """Run ``engine.pipeline.restore`` and return (result (H, W, 3) [0, 1], report)."""
    from engine.pipeline import run_to_completion

    finished = run_to_completion(request, denoiser=denoiser)
    return finished.result, dict(finished.report)


def evaluate(config: EvalConfig, restore_fn: Optional[RestoreFn] = None,
             warn: Callable[[str], None] = _ignore) -> Iterator[ImageResult]:
    """Yield one :class:`ImageResult` per (image, task), in image-major order; unreadable photos
    are skipped with a ``warn`` message."""
    from engine.device import pick_device
    from engine.operators import build_operator, photo_to_observation

    oracle = config.model == "oracle"
    restore_fn = restore_fn or (oracle_restore if oracle else pipeline_restore)
    if oracle and config.size % 32:
        raise InputError(f"with the oracle denoiser --size must be a multiple of 32, got {config.size}")
    device = pick_device(config.device)
    specs = {task: task_spec(task, config.noise, config.blur, config.sr_kernel) for task in config.tasks}
    for index, (name, clean) in enumerate(clean_images(config.data, config.size, config.limit, warn)):
        x = to_tensor(clean, device)
        for task, tasks in specs.items():
            if config.size % tasks.sr:
                raise InputError(f"--size {config.size} is not a multiple of the upscale factor {tasks.sr}")
            h_in = config.size // tasks.sr
            mask_np = make_mask(config.mask, h_in, h_in, config.mask_seed + index) if tasks.inpaint else None
            mask_t = torch.from_numpy(mask_np)[None, None].to(device) if mask_np is not None else None
            op = build_operator(tasks, height=config.size, width=config.size, mask=mask_t, device=device)
            y = op.A(x)
            if config.noise > 0:
                gen = torch.Generator().manual_seed(config.seed + 7919 * index)
                y = y + 2 * config.noise * torch.randn(y.shape, generator=gen).to(device)  # σ in [0,1] = 2σ in [-1,1]
            photo = to_image(y)  # what a user would hand the app: the degraded picture itself
            y_seen = photo_to_observation(op, to_tensor(photo, device))
            request = RestoreRequest(image=photo, tasks=tasks, mask=None if mask_np is None else mask_np > 0.5, model=config.model, steps=config.steps,
                                     eta=config.eta, seed=config.seed, device=config.device, window=config.window,
                                     overlap=config.window // 2, tiling="none" if oracle else "auto")
            start = time.perf_counter()
            result, report = restore_fn(request, clean)
            seconds = time.perf_counter() - start
            result = np.asarray(result, np.float32).clip(0, 1)
            if result.shape != clean.shape:
                raise RuntimeError(f"restored {name} has shape {result.shape}, expected {clean.shape}")
            baseline = to_image(op.A_pinv(y_seen))
            bicubic = bicubic_upscale(photo, tasks.sr) if tasks.sr > 1 else None
            yield ImageResult(
                image=name, task=task, psnr=psnr(result, clean), ssim=ssim(result, clean),
                consistency=consistency(op.A(to_tensor(result, device)), y_seen),
                baseline_psnr=psnr(baseline, clean), baseline_ssim=ssim(baseline, clean),
                bicubic_psnr=psnr(bicubic, clean) if bicubic is not None else None,
                bicubic_ssim=ssim(bicubic, clean) if bicubic is not None else None,
                seconds=seconds, report=_small(report),
            )


def oracle_restore(request: RestoreRequest, clean: np.ndarray) -> tuple[np.ndarray, dict]:
    """Restore through the pipeline with an oracle denoiser returning the true ε of ``clean``.

    The oracle knows the whole image, so the request must be one window (``tiling="none"``).
    """
    from engine.device import pick_device
    from engine.samplers import OracleDenoiser

    if request.tiling != "none":
        raise InputError("the oracle denoiser needs the whole image as one window (tiling none)")
    oracle = OracleDenoiser(to_tensor(clean, pick_device(request.device)))
    result, report = pipeline_restore(request, clean, denoiser=oracle)
    report["model"] = "oracle"
    return result, report


def _small(report: dict) -> dict:
    """Keep only JSON-friendly scalars of the pipeline's report."""
    return {k: v for k, v in report.items() if isinstance(v, (str, int, float, bool)) or v is None}


def summarize(results: list[ImageResult]) -> dict[str, dict[str, Optional[float]]]:
    """Per task: the mean of each metric over images (inf stays inf; None when not applicable)."""
    out: dict[str, dict[str, Optional[float]]] = {}
    for task in dict.fromkeys(r.task for r in results):
        rows = [r for r in results if r.task == task]
        means: dict[str, Optional[float]] = {"images": len(rows)}
        for key in METRIC_KEYS:
            values = [getattr(r, key) for r in rows if getattr(r, key) is not None]
            means[key] = float(np.mean(values)) if values else None
        out[task] = means
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_report(path: Union[str, Path], config: EvalConfig, results: list[ImageResult],
                 complete: bool = True) -> Path:
    """JSON (whether the run finished, results done of planned, config, per-image rows, per-task
    means) or CSV (per-image rows only), by extension. ``complete`` is False for a run stopped early."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in asdict(r).items() if k != "report"} for r in results]
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["image", "task", *METRIC_KEYS])
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    elif path.suffix.lower() == ".json":
        doc = {"complete": complete, "results_done": len(results), "results_planned": planned_results(config),
               "config": asdict(config), "results": rows, "mean": summarize(results)}
        path.write_text(json.dumps(_json_safe(doc), indent=2), encoding="utf-8")
    else:
        raise InputError(f"report must end in .json or .csv, got {path.name}")
    return path


def table_number(v: Optional[float], digits: int) -> str:
    """A mean for a results table: "-" when there is none, "inf" for a perfect PSNR."""
    return "-" if v is None else ("inf" if math.isinf(v) else f"{v:.{digits}f}")


def format_table(results: list[ImageResult]) -> str:
    """A small fixed-width table: per-task means of restored vs baselines."""
    f = table_number
    lines = [f"{'task':<10} {'n':>3} {'PSNR':>7} {'SSIM':>6} {'A†y PSNR':>9} {'A†y SSIM':>9} {'bicubic':>8} {'consist.':>9} {'s/img':>7}"]
    for task, m in summarize(results).items():
        lines.append(f"{task:<10} {m['images']:>3} {f(m['psnr'], 2):>7} {f(m['ssim'], 4):>6} {f(m['baseline_psnr'], 2):>9} "
                     f"{f(m['baseline_ssim'], 4):>9} {f(m['bicubic_psnr'], 2):>8} {f(m['consistency'], 4):>9} {f(m['seconds'], 2):>7}")
    return "\n".join(lines)
