"""Inference fast paths that keep the official weights: reduced-precision weights, channels_last,
and ``torch.compile`` with one dynamic batch dimension and an on-disk cache.

``torch.autocast`` alone re-casts every fp32 weight to fp16/bf16 on every call (for the ADM-256
that is ~1.1 GB of extra memory traffic per denoiser call). Casting the convolution and linear
weights once, as the reference's ``convert_to_fp16`` does, removes that; normalisation layers keep
their statistics in fp32 (GroupNorm32), so results stay within the autocast tolerance.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from engine.models.attention import GroupNorm32

log = logging.getLogger(__name__)

_HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}
_CAST = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.Embedding)
#: Environment variable that overrides where compiled kernels are kept.
COMPILE_CACHE_ENV = "RESTORER_COMPILE_CACHE"


def prepare_network(net: nn.Module, *, precision: str = "fp32", channels_last: bool = False,
                    device: Optional[torch.device] = None, inplace: bool = False) -> nn.Module:
    """``net`` ready for fast inference on ``device`` (default: where its parameters are).

    ``precision`` fp16/bf16 casts conv/linear/embedding weights and GroupNorm's affine once (use
    with autocast, which the denoiser wrapper applies); ``channels_last`` stores 4-D weights NHWC
    (feed NHWC inputs too). On the CPU only bf16 weights are cast (oneDNN runs them natively where
    the CPU has bf16, see ``engine.device.pick_precision``); fp16 there stays plain autocast.

    A copy is returned when anything changes, unless ``inplace``. Casting before moving to the
    device (``net`` on the CPU, ``device`` an accelerator) means the accelerator never holds the
    float32 weights: an ADM-256 then peaks at 1.1 GB there instead of 2.2 GB plus a copy.
    """
    current = next(net.parameters()).device
    device = device or current
    dtype = None if device.type == "cpu" and precision != "bf16" else _HALF.get(precision)
    if dtype is None and not channels_last and device == current:
        return net
    out = net if inplace else copy.deepcopy(net)
    if dtype is not None:
        for module in out.modules():
            if isinstance(module, _CAST) or isinstance(module, GroupNorm32):
                module.to(dtype)  # GroupNorm32 rounds γ, β to the input dtype anyway (see its doc)
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out.to(device)


def channels_last_pays(device: torch.device, precision: str) -> bool:
    """Whether NHWC weights and inputs are faster here: bf16 on the CPU, where oneDNN otherwise
    reorders every convolution's input and output (ADM-256, 256² window: 1.95 s instead of 4.29 s
    per call on 2 AMX cores; no difference in fp32). On GPUs the eager network was slower in NHWC,
    because GroupNorm and the other elementwise layers copy back to NCHW."""
    return device.type == "cpu" and precision == "bf16"


def compile_cache_dir() -> Path:
    """Where compiled kernels persist between runs: ``$RESTORER_COMPILE_CACHE``, else the user cache."""
    env = os.environ.get(COMPILE_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("Restorer", appauthor=False)) / "torch-compile"


class CompiledNetwork(nn.Module):
    """``torch.compile`` of a network for inference on fixed-size windows.

    * The batch dimension is dynamic: one compile serves every wavefront batch of 2 or more windows
      (batch 1 gets its own specialised graph), instead of one 1-2 minute compile per batch size.
    * Kernels are cached on disk (:func:`compile_cache_dir`), so the next run reuses them in
      seconds. An explicit ``TORCHINDUCTOR_CACHE_DIR`` is respected.
    * If compiling fails (no C++ compiler, an unsupported GPU...), the eager network is used from
      then on and :attr:`fallback_reason` says why; results are the same either way.
    """

    def __init__(self, net: nn.Module, *, cache_dir: Optional[Path] = None, backend: Any = "inductor"):
        super().__init__()
        if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir or compile_cache_dir())
        self.eager = net
        self.compiled = torch.compile(net, backend=backend)
        self.fallback_reason: Optional[str] = None

    def forward(self, x: torch.Tensor, t: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.fallback_reason is not None:
            return self.eager(x, t, *args, **kwargs)
        if x.shape[0] > 1:
            torch._dynamo.maybe_mark_dynamic(x, 0)
            torch._dynamo.maybe_mark_dynamic(t, 0)
            for value in list(args) + list(kwargs.values()):
                if isinstance(value, torch.Tensor) and value.shape[:1] == x.shape[:1]:
                    torch._dynamo.maybe_mark_dynamic(value, 0)
        try:
            return self.compiled(x, t, *args, **kwargs)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # compiler errors come in many types; the eager net always works
            self.fallback_reason = _root_cause(exc)
            log.warning("torch.compile failed, running the network uncompiled: %s", self.fallback_reason)
            return self.eager(x, t, *args, **kwargs)


def _root_cause(exc: BaseException) -> str:
    """'Type: first line' of the innermost cause (compiler errors wrap the useful one)."""
    while exc.__cause__ is not None or getattr(exc, "inner_exception", None) is not None:
        exc = exc.__cause__ or exc.inner_exception
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def compile_network(net: nn.Module, *, cache_dir: Optional[Path] = None, backend: Any = "inductor") -> CompiledNetwork:
    """The network wrapped in :class:`CompiledNetwork` (compiled lazily, on its first call)."""
    return CompiledNetwork(net, cache_dir=cache_dir, backend=backend)
