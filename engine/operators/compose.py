"""Composition of operators and a per-sample batch wrapper.

Exactness of the composite pseudo-inverse (ops listed in the order they act on x):

* Pooling and gray are scaled co-isometries (P Pᵀ = I/s², G Gᵀ = I/3) and gray commutes with any
  per-channel spatial operator, so for C = gray ∘ blur ∘ downscale the chain A_1† ∘ … ∘ A_n† is the
  exact Moore-Penrose inverse (for bicubic + separable blur, build_operator merges both into one
  separable operator; bicubic + FFT blur is the one chain where the plain chain is approximate).
* A mask M acting LAST, in observation space: if C is surjective (C C† = I: pooling, gray,
  untruncated blur) then (M C)† = C† M exactly. Otherwise (truncated blur) we use
  G = C† (M Π)⁺ with Π = C C†, which satisfies A G A = A and G A G = G exactly (a reflexive
  generalised inverse); (M Π)⁺ is computed by CGLS, so it is exact up to the solver tolerance.
"""

from __future__ import annotations

from typing import Sequence

import torch

from engine.geometry import Box
from engine.operators.base import Operator
from engine.operators.inpaint import InpaintOperator
from engine.operators.least_squares import cgls
from engine.operators.registry import register_operator


def has_full_range(op: Operator, height: int, width: int) -> bool:
    """Whether A A† = I for inputs of (height, width); False when the operator cannot tell."""
    check = getattr(op, "full_range_at", None)
    if check is not None:
        return bool(check(height, width))
    return bool(getattr(op, "full_range", False))


@register_operator("compose")
class ComposedOperator(Operator):
    """A = ops[-1] ∘ … ∘ ops[0]: ``ops`` in the order they act on x (see module doc)."""

    def __init__(self, ops: Sequence[Operator], *, max_iter: int = 100, tol: float = 1e-7):
        if not ops:
            raise ValueError("compose needs at least one operator")
        self.ops = list(ops)
        self.max_iter, self.tol = max_iter, tol
        self.scale = 1
        for op in self.ops:
            self.scale *= op.scale

    def A(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op.A(x)
        return x

    @staticmethod
    def _chain_A(ops: Sequence[Operator], x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            x = op.A(x)
        return x

    @staticmethod
    def _chain_pinv(ops: Sequence[Operator], y: torch.Tensor) -> torch.Tensor:
        for op in reversed(ops):
            y = op.A_pinv(y)
        return y

    def _inner_full_range(self, out_h: int, out_w: int) -> bool:
        inner = self.ops[:-1]
        scale = 1
        for op in inner:
            scale *= op.scale
        h, w = out_h * scale, out_w * scale
        for op in inner:
            if not has_full_range(op, h, w):
                return False
            h, w = h // op.scale, w // op.scale
        return True

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        last, inner = self.ops[-1], self.ops[:-1]
        if not inner or not isinstance(last, InpaintOperator) or self._inner_full_range(*y.shape[-2:]):
            return self._chain_pinv(self.ops, y)

        def project(v):  # Π = C C†, the orthogonal projector onto range(C)
            return self._chain_A(inner, self._chain_pinv(inner, v))

        w = cgls(lambda v: last.A(project(v)), lambda v: project(last.A(v)), y,
                 max_iter=self.max_iter, tol=self.tol)
        return self._chain_pinv(inner, w)

    def noise_gain(self) -> float:
        """Product of the parts' gains (exact when at most one part amplifies noise)."""
        gain = 1.0
        for op in self.ops:
            gain *= op.noise_gain()
        return gain

    def restrict(self, box: Box) -> "ComposedOperator":
        parts = []
        for op in self.ops:
            parts.append(op.restrict(box))
            if op.scale > 1:
                box = box.divided(op.scale)
        return ComposedOperator(parts, max_iter=self.max_iter, tol=self.tol)

    def parts(self) -> list[Operator]:
        return list(self.ops)


@register_operator("batch")
class BatchOperator(Operator):
    """Sample i of a batch goes through ``ops[i]`` (windows whose masks differ, batched together).

    All operators must share ``scale`` and observation channels. When every entry is the same
    object the whole batch goes through it in one call.
    """

    def __init__(self, ops: Sequence[Operator]):
        if not ops:
            raise ValueError("a batch operator needs at least one operator")
        self.ops = list(ops)
        scales = {op.scale for op in self.ops}
        if len(scales) != 1:
            raise ValueError(f"batched operators must share one scale, got {sorted(scales)}")
        self.scale = scales.pop()
        self.shared = all(op is self.ops[0] for op in self.ops)

    def _apply(self, t: torch.Tensor, pinv: bool) -> torch.Tensor:
        if self.shared:
            op = self.ops[0]
            return op.A_pinv(t) if pinv else op.A(t)
        if t.shape[0] != len(self.ops):
            raise ValueError(f"batch of {t.shape[0]} samples for {len(self.ops)} operators")
        outs = [(op.A_pinv if pinv else op.A)(t[i : i + 1]) for i, op in enumerate(self.ops)]
        return torch.cat(outs, dim=0)

    def A(self, x):
        return self._apply(x, pinv=False)

    def A_pinv(self, y):
        return self._apply(y, pinv=True)

    def noise_gain(self) -> float:
        return max(op.noise_gain() for op in self.ops)

    def restrict(self, box: Box) -> "BatchOperator":
        return BatchOperator([op.restrict(box) for op in self.ops])
