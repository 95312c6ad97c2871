"""Tiny random-weight configurations of every network family, for tests and the "test-tiny" model.

They keep each feature of the official networks switched on (attention with 1 and 2 heads of
64 channels, learned sigma, scale-shift norm, resblock up/down, attention pooling) at a size
where a 64×64 forward takes milliseconds on a CPU. Weights come from a fixed seed through a
private generator, so results are reproducible and the global RNG is left alone.
NEVER present their output as a restoration: the weights are random.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.models.checkpoint import ModelConfig, build_model

TINY_SEED = 20240611


def tiny_adm_config(*, class_cond: bool = False) -> ModelConfig:
    """ADM UNet: 32 ch, mult (1, 2, 2, 4), 1 res block, attention at levels 2 and 3 (64 and 128 ch,
    i.e. 1 and 2 heads of 64; 64² and 32² tokens on a 256 window, so CPU runs stay fast), learned
    sigma, scale-shift, resblock up/down. Sides: multiples of 8."""
    return ModelConfig(family="adm", model_channels=32, channel_mult=(1, 2, 2, 4), num_res_blocks=1,
                       attention_levels=(2, 3), out_channels=6, num_head_channels=64,
                       num_classes=10 if class_cond else None)


def tiny_ddpm_config() -> ModelConfig:
    """DDPM Model: 32 ch, mult (1, 2, 2, 2), 1 res block, attention at level 3, conv resampling, ε only."""
    return ModelConfig(family="ddpm", model_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=1,
                       attention_levels=(3,), out_channels=3, num_head_channels=0,
                       use_scale_shift_norm=False, resblock_updown=False, conv_resample=True)


def tiny_classifier_config() -> ModelConfig:
    """ADM classifier for 64×64 inputs with 10 classes: 32 ch, mult (1, 2, 4), 1 res block,
    attention at levels 1 and 2, attention pooling over a 16×16 grid."""
    return ModelConfig(family="adm-classifier", model_channels=32, channel_mult=(1, 2, 4), num_res_blocks=1,
                       attention_levels=(1, 2), image_size=64, out_channels=10, num_head_channels=64)


@torch.no_grad()
def randomize_weights(model: nn.Module, seed: int = TINY_SEED) -> nn.Module:
    """Fill every parameter from a seeded generator (also the zero-initialised output layers, so
    a random network gives non-trivial outputs). Norm weights ≈ 1, biases small, weights ~ 1/√fan_in."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for name, param in model.named_parameters():
        values = torch.randn(param.shape, generator=gen)
        if name.endswith("positional_embedding"):
            values = values / math.sqrt(param.shape[0])
        elif param.dim() == 1 and ("norm" in name or _is_norm_weight(model, name)):
            values = (1.0 + 0.1 * values) if name.endswith("weight") else 0.1 * values
        elif param.dim() == 1:
            values = 0.05 * values
        else:
            values = values / math.sqrt(param[0].numel())
        param.copy_(values.to(param.dtype))
    return model


def _is_norm_weight(model: nn.Module, name: str) -> bool:
    module = model.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(module, nn.GroupNorm)


def build_tiny(config: ModelConfig, *, seed: int = TINY_SEED, device: torch.device = torch.device("cpu")) -> nn.Module:
    """Build ``config`` with deterministic random weights, in eval mode, without gradients."""
    model = randomize_weights(build_model(config), seed)
    return model.to(device).eval().requires_grad_(False)
