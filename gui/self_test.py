"""``restorer --self-test``: a one-minute check that an installed/bundled app really works.

Imports every engine and GUI module, reads the model catalog, loads the random-weight
``test-tiny`` model and restores a small generated image on the CPU (2x upscale), then checks
the result's shape and range (the weights are random: the picture itself means nothing). main.py dispatches ``--self-test`` here. The report goes to the
given text stream (this is the one engine entry point meant to write to a console).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
import traceback
from typing import Callable, TextIO

import numpy as np

GUI_MODULES = ("gui.models.dialog", "gui.models.welcome")  # plus every other gui.* module found


def _import_all(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        if info.name.split(".")[-1].startswith("__"):
            continue
        importlib.import_module(info.name)
        names.append(info.name)
    return names


def _check_imports() -> str:
    engine_modules = _import_all("engine")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    gui_modules = _import_all("gui")
    missing = [m for m in GUI_MODULES if m not in gui_modules]
    if missing:
        raise RuntimeError(f"GUI modules missing from the bundle: {', '.join(missing)}")
    return f"{len(engine_modules)} engine and {len(gui_modules)} GUI modules import"


def _check_catalog() -> str:
    from engine.models.catalog import load_catalog

    entries = load_catalog()
    if not any(e.recommended for e in entries.values()):
        raise RuntimeError("the model catalog names no recommended model")
    return f"model catalog has {len(entries)} models"


def test_image(height: int = 32, width: int = 32) -> np.ndarray:
    """A smooth colour test image (H, W, 3) float32 in [0, 1]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / (width - 1), yy / (height - 1), 0.5 + 0.4 * np.sin((xx + yy) / 6.0)], axis=-1)
    return img.astype(np.float32)


def _check_restore() -> str:
    import torch

    from engine.events import FinishedEvent
    from engine.models import load_denoiser
    from engine.pipeline import restore
    from engine.request import RestoreRequest, Tasks

    denoiser = load_denoiser("test-tiny", device=torch.device("cpu"))
    if not getattr(denoiser, "is_random", False):
        raise RuntimeError("test-tiny is not flagged as random weights")
    image = test_image()
    request = RestoreRequest(image=image, tasks=Tasks(sr=2), model="test-tiny", steps=3, device="cpu",
                             window=64, overlap=32, seed=1)
    events = list(restore(request))
    if not events or not isinstance(events[-1], FinishedEvent):
        raise RuntimeError("the restore run did not finish")
    result = np.asarray(events[-1].result)
    if result.shape != (64, 64, 3):
        raise RuntimeError(f"expected a 64x64x3 result, got {result.shape}")
    if not np.isfinite(result).all() or result.min() < 0.0 or result.max() > 1.0:
        raise RuntimeError("the result has values outside [0, 1]")
    report = events[-1].report
    if not report.get("is_random_model", True):
        raise RuntimeError("the report does not flag test-tiny's output as coming from random weights")
    # test-tiny has random weights, so the picture itself is meaningless: only the plumbing is checked
    return f"test-tiny ran {report.get('denoiser_calls', '?')} denoiser calls: 32x32 -> 64x64 on the CPU"


CHECKS: tuple[tuple[str, Callable[[], str]], ...] = (
    ("imports", _check_imports),
    ("catalog", _check_catalog),
    ("restore", _check_restore),
)


def run_self_test(out: TextIO = sys.stdout) -> int:
    """Run every check; write one line per check and ``OK`` at the end. Returns 0 if all pass, 1 if not."""
    started = time.perf_counter()
    failed = 0
    for name, check in CHECKS:
        try:
            out.write(f"{name}: {check()}\n")
        except Exception as exc:  # noqa: BLE001 - a self-test reports everything
            failed += 1
            out.write(f"{name}: FAILED — {type(exc).__name__}: {exc}\n")
            out.write(traceback.format_exc(limit=3))
        out.flush()
    elapsed = time.perf_counter() - started
    out.write(f"self-test {'OK' if not failed else 'FAILED'} in {elapsed:.1f} s\n")
    out.flush()
    return 0 if not failed else 1
