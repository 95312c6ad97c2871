"""Per-sample random draws, so results do not depend on how windows are batched.

Sample i of a batch always draws from ``generators[i]``; running windows one at a time with their
own generators gives exactly the numbers a batched run gives.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

Generators = Union[None, torch.Generator, Sequence[torch.Generator]]


def seeded_generators(seeds: Sequence[int], device: Union[str, torch.device] = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per seed, on ``device``.

    Draws are made on the generator's device, so put the generators on the sample's device: a CPU
    generator feeding a GPU sample costs a host-to-device copy per draw (and CPU and CUDA generators
    give different numbers for the same seed).
    """
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    return gens


def per_sample_randn(
    shape: Sequence[int],
    generators: Generators,
    device: Union[str, torch.device, None] = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal tensor of ``shape`` (B, ...) on ``device``.

    ``generators``: a list of B generators (sample i drawn from ``generators[i]``), a single
    generator (the whole tensor drawn from it), or None (torch's global generator — not
    reproducible across batchings). Each draw is made on the generator's own device, then moved.
    """
    shape = tuple(int(s) for s in shape)
    if generators is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(generators, torch.Generator):
        return _draw(shape, generators, device, dtype)
    gens = list(generators)
    if len(gens) == 1 and shape[0] != 1:
        return _draw(shape, gens[0], device, dtype)
    if len(gens) != shape[0]:
        raise ValueError(f"need one generator per batch sample: got {len(gens)} for batch {shape[0]}")
    parts = [_draw(shape[1:], g, device, dtype) for g in gens]
    return torch.stack(parts, dim=0)


def _draw(shape: tuple[int, ...], g: torch.Generator, device: Optional[Union[str, torch.device]], dtype: torch.dtype) -> torch.Tensor:
    out = torch.randn(shape, generator=g, device=g.device, dtype=dtype)
    if device is not None and out.device != torch.device(device):
        out = out.to(device, non_blocking=True)
    return out
