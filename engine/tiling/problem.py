"""A restoration problem cut into windows: each window's operator and observation, on the device.

The tiling code never holds the full-size problem on the device. It asks a problem for
``operator(box)`` (the task operator restricted to a window, built on the device) and
``observation(box, op)`` (the window's crop of y, moved to the device).

* :class:`PhotoProblem` — the app's problem: the user's photo (which *is* y) and mask at input
  resolution on the host, turned into per-window operators with ``engine.operators``.
  It can be padded (small or unaligned canvases) and downscaled (HiR phase 1).
* :class:`ObservedProblem` — an operator and a full observation ``y`` already built (tests, or
  when A and y come from elsewhere): windows use ``op.restrict`` / ``op.crop_observation``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from engine.geometry import Box
from engine.operators.base import Operator
from engine.request import Quirks, Tasks


class WindowProblem(Protocol):
    height: int  # output canvas
    width: int
    scale: int  # output pixels per observed pixel (SR factor)
    device: torch.device
    dtype: torch.dtype
    monochrome: bool  # the result must stay black and white (R = G = B)

    def operator(self, box: Box) -> Operator: ...

    def observation(self, box: Box, op: Operator) -> torch.Tensor: ...


@dataclass
class ObservedProblem:
    """``op`` acts on the whole (height, width) canvas; ``y`` is A(x) for the whole canvas."""

    op: Operator
    y: torch.Tensor  # (1, C, h_obs, w_obs)
    height: int
    width: int
    monochrome: bool = False

    @property
    def scale(self) -> int:
        return int(getattr(self.op, "scale", 1))

    @property
    def device(self) -> torch.device:
        return self.y.device

    @property
    def dtype(self) -> torch.dtype:
        return self.y.dtype

    def operator(self, box: Box) -> Operator:
        return self.op.restrict(box)

    def observation(self, box: Box, op: Operator) -> torch.Tensor:
        return self.op.crop_observation(self.y, box)


@dataclass
class PhotoProblem:
    """The user's problem. ``photo``: (1, 3, h_in, w_in) float32 in [-1, 1] on the host (it is y,
    as ``engine.operators.photo_to_observation`` reads it); ``mask``: (1, 1, h_in, w_in) float32,
    1 = fill, on the host, or None. The output canvas is ``tasks.sr`` × the input."""

    tasks: Tasks
    photo: torch.Tensor
    mask: Optional[torch.Tensor]
    device: torch.device
    dtype: torch.dtype = torch.float32
    quirks: Quirks = Quirks()
    monochrome: bool = False  # a black-and-white photo restored without colorizing stays so

    @property
    def scale(self) -> int:
        return int(self.tasks.sr)

    @property
    def height(self) -> int:
        return self.photo.shape[-2] * self.scale

    @property
    def width(self) -> int:
        return self.photo.shape[-1] * self.scale

    def _input_box(self, box: Box) -> Box:
        return box.divided(self.scale) if self.scale > 1 else box

    def _mask_crop(self, box: Box) -> Optional[torch.Tensor]:
        if self.mask is None or not self.tasks.inpaint:
            return None
        rows, cols = self._input_box(box).slices()
        return self.mask[..., rows, cols].to(self.device, self.dtype)

    def operator(self, box: Box) -> Operator:
        from engine.operators import build_operator

        return build_operator(
            self.tasks, height=box.height, width=box.width, mask=self._mask_crop(box),
            device=self.device, dtype=self.dtype, quirks=self.quirks,
        )

    def observation(self, box: Box, op: Operator) -> torch.Tensor:
        from engine.operators import photo_to_observation

        rows, cols = self._input_box(box).slices()
        photo = self.photo[..., rows, cols].to(self.device, self.dtype)
        return photo_to_observation(op, photo, self._mask_crop(box))

    def full_operator_on_host(self) -> tuple[Operator, torch.Tensor]:
        """(A, y) for the whole canvas on the host (float32), for the consistency report."""
        host = dataclasses.replace(self, device=torch.device("cpu"), dtype=torch.float32)
        box = Box(0, 0, self.height, self.width)
        op = host.operator(box)
        return op, host.observation(box, op)

    def padded(self, height: int, width: int) -> "PhotoProblem":
        """The problem on a (height, width) ≥ current output canvas: photo and mask extended at the
        bottom/right by symmetric reflection (repeated as needed), so the padding looks like the
        photo and stays consistent with it; the result is cropped back afterwards."""
        s = self.scale
        if height % s or width % s:
            raise ValueError(f"padded size {height}×{width} is not a multiple of the SR factor {s}")
        ph, pw = height // s - self.photo.shape[-2], width // s - self.photo.shape[-1]
        if ph < 0 or pw < 0:
            raise ValueError("padding cannot shrink the problem")
        if ph == 0 and pw == 0:
            return self
        return dataclasses.replace(self, photo=_reflect_pad(self.photo, ph, pw),
                                   mask=None if self.mask is None else _reflect_pad(self.mask, ph, pw))

    def cropped(self, height: int, width: int) -> "PhotoProblem":
        """The top-left (height, width) output canvas of this problem, as views of its photo and mask:
        undoes :meth:`padded` without a copy."""
        h, w = height // self.scale, width // self.scale
        return dataclasses.replace(self, photo=self.photo[..., :h, :w],
                                   mask=None if self.mask is None else self.mask[..., :h, :w])

    def downscaled(self, factor: int) -> Optional["PhotoProblem"]:
        """The same problem with an output ``factor`` times smaller (HiR phase 1), or None when it
        cannot be posed (factor incompatible with the SR factor, or nothing left to solve).

        factor | sr: same photo, SR factor sr/factor (avgpool nests: exact).
        sr | factor: photo average-pooled and mask max-pooled (a low pixel is filled if any of its
        block is) by k = factor/sr, no SR; noise σ/k; blur widths divided by k ("kernel:" blurs
        are dropped at the low scale). Input sizes must be multiples of k (pad first).
        """
        tasks = low_scale_tasks(self.tasks, factor)
        if tasks is None:
            return None
        if self.scale % factor == 0:
            return dataclasses.replace(self, tasks=tasks)
        k = factor // self.scale
        h, w = self.photo.shape[-2:]
        if h % k or w % k:
            raise ValueError(f"input {h}×{w} is not a multiple of the pooling block {k}: pad first")
        photo = F.avg_pool2d(self.photo, k)
        mask = None if self.mask is None else F.max_pool2d(self.mask, k)
        return dataclasses.replace(self, tasks=tasks, photo=photo, mask=mask)


def low_scale_tasks(tasks: Tasks, factor: int) -> Optional[Tasks]:
    """The tasks of a problem ``factor`` times smaller (see :meth:`PhotoProblem.downscaled`), or
    None when it cannot be posed or leaves nothing to solve. Plain Python: plans ask it too."""
    s = int(tasks.sr)
    if factor < 1:
        raise ValueError("factor must be ≥ 1")
    if s % factor == 0:
        low = dataclasses.replace(tasks, sr=s // factor)
    elif factor % s:
        return None
    else:
        k = factor // s
        low = dataclasses.replace(tasks, sr=1, noise=tasks.noise / k, deblur=_scaled_blur(tasks.deblur, k))
    return low if low.any() else None


def _reflect_pad(t: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """(1, C, h, w) -> (1, C, h + pad_h, w + pad_w), symmetric reflection at bottom/right."""
    arr = t.detach().cpu().numpy()
    out = np.pad(arr, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")
    return torch.from_numpy(np.ascontiguousarray(out)).to(t.dtype)


def _scaled_blur(spec: Optional[str], k: int) -> Optional[str]:
    if not spec:
        return spec
    m = re.fullmatch(r"\s*(gauss|uniform):\s*([0-9.]+)\s*", spec)
    if m is None:
        return None
    kind, value = m.group(1), float(m.group(2)) / k
    if kind == "gauss":
        return f"gauss:{value:g}" if value >= 0.3 else None
    size = int(round(value))
    return f"uniform:{size}" if size >= 2 else None
