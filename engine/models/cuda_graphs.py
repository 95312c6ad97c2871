"""Replay the denoiser as a CUDA graph: one launch per call instead of ~2000 small ones.

The eager ADM-256 forward is a long chain of small kernels (GroupNorm, SiLU, scale-shift, ...);
at the batch sizes MSR's wavefront allows (1-4 windows) the GPU waits on the host launching them.
Capturing the forward once per input shape and replaying it removes that cost with the very same
kernels and weights, so results are identical to the eager call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from engine.device import is_cuda


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor
    t: torch.Tensor
    out: torch.Tensor


class GraphedDenoiser:
    """Wraps a denoiser; on CUDA inputs, captures one graph per (shape, dtype) and replays it.

    Other devices, and shapes that fail to capture, fall back to the eager call.
    """

    def __init__(self, inner: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], warmup: int = 2):
        self.inner = inner
        self.image_size = getattr(inner, "image_size", 256)
        self.is_random = getattr(inner, "is_random", False)
        self.warmup = warmup
        self._graphs: dict[tuple, _Graph | None] = {}
        self._pool = None

    def __getattr__(self, name: str):  # config, net, precision... of the wrapped denoiser
        if name == "inner":  # not set yet (copy/unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _capture(self, x: torch.Tensor, t: torch.Tensor) -> _Graph | None:
        static_x, static_t = x.clone(), t.clone()
        stream = torch.cuda.Stream(device=x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        try:
            with torch.cuda.stream(stream):
                for _ in range(self.warmup):
                    self.inner(static_x, static_t)
            torch.cuda.current_stream(x.device).wait_stream(stream)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                out = self.inner(static_x, static_t)
        except RuntimeError:
            return None
        return _Graph(graph, static_x, static_t, out)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not is_cuda(x_t.device) or torch.is_grad_enabled() and x_t.requires_grad:
            return self.inner(x_t, t)
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0]).long()
        key = (tuple(x_t.shape), x_t.dtype, x_t.device)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x_t, t)
        g = self._graphs[key]
        if g is None:
            return self.inner(x_t, t)
        g.x.copy_(x_t)
        g.t.copy_(t)
        g.graph.replay()
        return g.out.clone()
