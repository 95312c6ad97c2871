"""From the user's ticked tasks to one operator, and from the user's photo to the observation y."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from engine.errors import InputError
from engine.operators.base import Operator
from engine.operators.blur import BlurOperator
from engine.operators.colorize import ColorizeOperator
from engine.operators.compose import ComposedOperator
from engine.operators.downsample import AvgPoolSR, BicubicSR
from engine.operators.identity import IdentityOperator
from engine.operators.inpaint import InpaintOperator
from engine.operators.separable import SeparableProduct
from engine.request import Quirks, Tasks


def load_kernel(path: str) -> np.ndarray:
    """A blur kernel from .npy (2-D float) or a grayscale image, normalised to sum 1."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"blur kernel file not found: {path}")
    try:
        if p.suffix.lower() == ".npy":
            kernel = np.load(p, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(p) as im:
                kernel = np.asarray(im.convert("F"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the blur kernel {path}: {exc}") from exc
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2:
        raise InputError(f"a blur kernel must be a 2-D array, {path} has shape {kernel.shape}")
    total = kernel.sum()
    if not np.isfinite(total) or total <= 0:
        raise InputError(f"the blur kernel in {path} must have a positive sum")
    return kernel / total


def parse_deblur(spec: str, *, quirks: Quirks = Quirks(), size_hint=None) -> BlurOperator:
    """``"gauss:SIGMA"``, ``"uniform:SIZE"`` or ``"kernel:PATH"`` -> a BlurOperator."""
    kind, sep, value = (spec or "").partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if not sep or not value:
        raise InputError(f"deblur must look like gauss:SIGMA, uniform:SIZE or kernel:PATH, got {spec!r}")
    common = dict(ddrm_taps=quirks.ddrm_kernel_taps, size_hint=size_hint,
                  padding="zero" if quirks.ddrm_kernel_taps else "reflect")
    if kind in ("gauss", "gaussian"):
        try:
            sigma = float(value)
        except ValueError:
            raise InputError(f"blur sigma must be a number, got {value!r}") from None
        if not (sigma > 0 and np.isfinite(sigma)):
            raise InputError(f"blur sigma must be > 0, got {value}")
        return BlurOperator(sigma=sigma, **common)
    if kind in ("uniform", "box"):
        try:
            size = int(value)
        except ValueError:
            raise InputError(f"box blur size must be a whole number, got {value!r}") from None
        if size < 1:
            raise InputError(f"box blur size must be ≥ 1, got {size}")
        return BlurOperator(size=size, **common)
    if kind == "kernel":
        return BlurOperator(load_kernel(value), **common)
    raise InputError(f"unknown blur kind {kind!r}: use gauss:SIGMA, uniform:SIZE or kernel:PATH")


def build_operator(tasks: Tasks, *, height: int, width: int, mask: Optional[torch.Tensor],
                   device, dtype=torch.float32, quirks: Quirks = Quirks()) -> Operator:
    """The task operator A for an output of (height, width) = sr × the input size.

    Order of action on x: downscale (sr) -> blur (at the photo's resolution) -> gray -> mask (in
    observation space, i.e. at input size). ``mask`` is (1, 1, h_in, w_in) with 1 = missing / fill
    (the user's painting); it is used only when ``tasks.inpaint``. Denoise alone gives identity.
    """
    if not tasks.any():
        raise InputError("nothing to do: tick at least one task")
    sr = int(tasks.sr)
    if sr < 1 or sr != tasks.sr:
        raise InputError(f"upscale factor must be a whole number ≥ 1, got {tasks.sr}")
    if height % sr or width % sr:
        raise InputError(f"output size {width}×{height} is not a multiple of the upscale factor {sr}")
    h_in, w_in = height // sr, width // sr
    ops: list[Operator] = []
    if sr > 1:
        if tasks.sr_kernel == "avgpool":
            ops.append(AvgPoolSR(sr))
        elif tasks.sr_kernel == "bicubic":
            ops.append(BicubicSR(sr, size_hint=(height, width)))
        else:
            raise InputError(f"unknown upscale kernel {tasks.sr_kernel!r} (avgpool or bicubic)")
    if tasks.deblur:
        blur = parse_deblur(tasks.deblur, quirks=quirks, size_hint=(h_in, w_in))
        if ops and isinstance(ops[-1], BicubicSR) and blur.separable:
            ops[-1] = SeparableProduct(blur.impl, ops[-1], size_hint=(height, width))  # type: ignore[arg-type]
        else:
            ops.append(blur)
    if tasks.colorize:
        ops.append(ColorizeOperator())
    if tasks.inpaint:
        if mask is None:
            raise InputError("filling masked areas needs a mask")
        if mask.dim() != 4 or mask.shape[:2] != (1, 1) or tuple(mask.shape[-2:]) != (h_in, w_in):
            raise InputError(f"the mask must be (1, 1, {h_in}, {w_in}) for this photo, got {tuple(mask.shape)}")
        keep = (mask.to(device=device, dtype=dtype) <= 0.5).to(dtype)
        ops.append(InpaintOperator(keep))
    if not ops:
        return IdentityOperator()
    return ops[0] if len(ops) == 1 else ComposedOperator(ops)


def _parts(op: Operator) -> list[Operator]:
    return op.parts() if isinstance(op, ComposedOperator) else [op]


def photo_to_observation(op_or_tasks: Union[Operator, Tasks], photo: torch.Tensor,
                         mask: Optional[torch.Tensor] = None, *, quirks: Quirks = Quirks()) -> torch.Tensor:
    """The observation y for a real photo (1, 3, h_in, w_in) in [-1, 1]: the photo IS y.

    The photo is already at observation resolution and already blurred; what remains is to take
    its gray mean (colorize) and to blank the masked pixels (the operator's keep-mask; ``mask``,
    1 = missing, is only used to build the operator when Tasks are given). Finally y is projected onto range(A) as y = A(A†(y)) — a no-op for the
    surjective operators; for a truncated blur it drops the components A cannot produce.
    Returns y with the shape of A(x) for x of (1, 3, sr·h_in, sr·w_in).
    """
    if isinstance(op_or_tasks, Tasks):
        h_in, w_in = photo.shape[-2:]
        op = build_operator(op_or_tasks, height=h_in * op_or_tasks.sr, width=w_in * op_or_tasks.sr,
                            mask=mask, device=photo.device, dtype=photo.dtype, quirks=quirks)
    else:
        op = op_or_tasks
    y = photo
    parts = _parts(op)
    if any(isinstance(p, ColorizeOperator) for p in parts):
        y = y.mean(dim=1, keepdim=True)
    inpaint = [p for p in parts if isinstance(p, InpaintOperator)]
    if inpaint:
        y = inpaint[-1].A(y)
    return op.A(op.A_pinv(y))


def initial_estimate(op: Operator, y: torch.Tensor) -> torch.Tensor:
    """A†(y): the least-squares image used for previews, (B, 3, H, W)."""
    return op.A_pinv(y)
