"""The one contract every degradation operator follows, and the data-consistency step built on it.

All tensors are float, shape ``(B, C, H, W)``; images live in [-1, 1]. ``x`` is always the
restored (output-resolution, 3-channel) image; ``y`` is whatever ``A`` produces (it may be smaller,
e.g. for super-resolution, or have identical channels, e.g. for colorization).
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from typing import Optional

import torch

from engine.geometry import Box


class Operator(ABC):
    """A linear degradation ``A`` with a pseudo-inverse ``A†``.

    Contract (checked for every registered operator by one parametrized test):
    ``A(A_pinv(A(x))) == A(x)``, ``A_pinv(A(A_pinv(y))) == A_pinv(y)``; shapes, dtype and device
    are preserved; batched inputs are treated sample by sample.
    """

    #: Output pixels per observed pixel along each axis (SR factor); 1 for same-size tasks.
    scale: int = 1

    @abstractmethod
    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Degrade: (B, 3, H, W) -> observation (B, C, H/scale, W/scale)."""

    @abstractmethod
    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        """Pseudo-inverse: observation -> (B, 3, H, W)."""

    def noise_gain(self) -> float:
        """Per-pixel std of ``A_pinv(n)`` for white noise ``n`` of unit std in observation space.

        DDNM+ uses it to decide how much of the noisy correction can be trusted at each step.
        """
        return 1.0

    def restrict(self, box: Box) -> "Operator":
        """The operator acting on the window ``box`` (output coordinates) of a larger image.

        Operators without spatial parameters return themselves. Boxes must be aligned to
        ``scale`` for SR operators.
        """
        return self

    def crop_observation(self, y: torch.Tensor, box: Box) -> torch.Tensor:
        """The part of a full observation ``y`` that ``restrict(box)`` observes."""
        b = box.divided(self.scale) if self.scale > 1 else box
        rows, cols = b.slices()
        return y[..., rows, cols]

    def observation_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of ``A(x)`` for an ``x`` of (height, width)."""
        return height // self.scale, width // self.scale


class Constraint(ABC):
    """A data-consistency projection applied to the sampler's clean estimate x0 at every step."""

    @abstractmethod
    def project(self, x0: torch.Tensor, lam: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Return x̂0: ``x0`` moved (fully when lam == 1) onto the set the constraint allows."""

    def noise_gain(self) -> float:
        return 1.0

    def residual(self, x: torch.Tensor) -> float:
        """Relative inconsistency ‖A x − y‖ / ‖y‖ (0 for a perfect result)."""
        return 0.0

    def hard_part(self) -> "Constraint":
        """The constraints the result must satisfy exactly (observations, known pixels), without
        soft guides such as HiR's low-frequency prior."""
        return self


class Observation(Constraint):
    """``A x = y``: the DDNM range-null-space correction x̂0 = x0 − λ A†(A x0 − y)."""

    def __init__(self, op: Operator, y: torch.Tensor):
        self.op = op
        self.y = y

    def project(self, x0, lam=1.0):
        return x0 - lam * self.op.A_pinv(self.op.A(x0) - self.y)

    def noise_gain(self) -> float:
        return self.op.noise_gain()

    def residual(self, x) -> float:
        return norm64(self.op.A(x), self.y) / max(norm64(self.y), 1e-12)


def norm64(a: torch.Tensor, b: Optional[torch.Tensor] = None, chunk: int = 1 << 22) -> float:
    """‖a − b‖₂ (‖a‖₂ without ``b``): the difference taken in the tensors' dtype, the sum of squares
    in float64, a block of rows at a time (views, whatever the memory layout): a full-size photo
    needs no difference or float64 copy."""
    if b is not None and b.shape != a.shape:
        a, b = torch.broadcast_tensors(a, b)
    a = a.detach().reshape(1, -1) if a.dim() < 2 else a.detach()
    b = None if b is None else (b.detach().reshape(1, -1) if b.dim() < 2 else b.detach())
    rows = a.shape[-2]
    step = max(1, chunk * rows // max(a.numel(), 1))
    total = 0.0
    for start in range(0, rows, step):
        part = a[..., start:start + step, :]
        if b is not None:
            part = part - b[..., start:start + step, :]
        total += float(torch.sum(part.double().square()))
    return math.sqrt(total)


class Stacked(Constraint):
    """A constraint stacked on ``inner``: noise and residual are the inner constraint's, and it
    stays in the hard part (subclasses that are soft guides return ``inner.hard_part()``)."""

    def __init__(self, inner: Constraint):
        self.inner = inner

    def noise_gain(self) -> float:
        return self.inner.noise_gain()

    def residual(self, x) -> float:
        return self.inner.residual(x)

    def hard_part(self) -> Constraint:
        inner = self.inner.hard_part()
        if inner is self.inner:
            return self
        out = copy.copy(self)
        out.inner = inner
        return out


class KnownPixels(Stacked):
    """Pixels already fixed (MSR overlap with finished windows): x̂0 = M·values + (1−M)·inner(x0).

    ``mask`` is (B or 1, 1, H, W) with 1 where ``values`` are known. Known pixels carry no noise,
    so they are always imposed fully, whatever ``lam`` the inner constraint gets.
    """

    def __init__(self, inner: Constraint, mask: torch.Tensor, values: torch.Tensor):
        super().__init__(inner)
        self.mask = mask
        self.values = values

    def project(self, x0, lam=1.0):
        return torch.lerp(self.inner.project(x0, lam), self.values, self.mask)


class Monochrome(Stacked):
    """The result stays black and white: x̂0 = inner(gray(x0)), gray = the channel mean replicated.

    For operators that treat the three channels alike (masks, pooling, blur, identity) and a gray
    observation, ``inner`` maps gray images to gray images, so x̂0 satisfies both the inner
    constraint and R = G = B exactly (the projection onto their intersection)."""

    def project(self, x0, lam=1.0):
        return self.inner.project(x0.mean(dim=1, keepdim=True).expand_as(x0), lam)


def project_in_range(constraint: Constraint, x: torch.Tensor, iters: int = 40) -> torch.Tensor:
    """A point of [-1, 1] that satisfies ``constraint`` (to float precision), near ``x``.

    The sampler's last x̂0 satisfies A x = y exactly but may leave [-1, 1] (an untrained or weak
    prior predicts out-of-range detail in the null space), and clipping it for display would break
    the consistency. Alternating projections (POCS) between the box and the constraint set converge
    to a point in both whenever one exists, which is the case for a real photo as y. Only the
    constraint's hard part is used: soft guides (HiR's prior) have done their work during sampling.
    """
    constraint = constraint.hard_part()
    for _ in range(iters):
        clipped = x.clamp(-1.0, 1.0)
        x = constraint.project(clipped, 1.0)
        if torch.equal(x, clipped):
            break
    return x.clamp(-1.0, 1.0)
