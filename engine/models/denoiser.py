"""What samplers call: ``eps = denoiser(x_t, t)``. Checkpoint quirks stay behind this interface.

A denoiser takes ``x_t`` (B, 3, H, W) float32 in model space and ``t`` (B,) int64 *original*
timesteps in [0, 999] (never respaced indices) and returns the predicted noise ε (B, 3, H, W)
float32. Learned-sigma outputs are cut to ε here, class labels are bound here, the two
timestep-embedding conventions live in the networks, and reduced precision (autocast) is
applied here, so samplers stay plain.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Denoiser(Protocol):
    #: Native window size of the network (256 for the official checkpoints).
    image_size: int
    #: True when the weights are random (test-tiny): never present the output as a restoration.
    is_random: bool

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Guidance(Protocol):
    """Classifier guidance: returns scale · ∇_{x_t} log p(c | x_t, t), same shape as x_t."""

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...
