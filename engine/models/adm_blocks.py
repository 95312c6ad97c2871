"""Building blocks of the ADM (OpenAI guided-diffusion) UNet and classifier.

Module and parameter names follow the official checkpoints (``in_layers``, ``emb_layers``,
``out_layers``, ``skip_connection``, ``norm``/``qkv``/``proj_out``, ``op``, ``conv``), so the
official state dicts load key for key. Written from the published architecture description.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.attention import GroupNorm32, legacy_qkv_attention


def adm_timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding, ADM convention: [cos, sin], frequencies exp(-ln(P)·i/half).

    t: (B,) original timesteps 0..999 (int or float, no rescaling). Returns (B, dim) float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def norm32(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels, eps=1e-5)


class TimestepSequential(nn.Sequential):
    """A sequence of layers; those that take the embedding (ResBlock) get it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Downsample(nn.Module):
    """Halve H and W: 3×3 stride-2 conv (key ``op``) or 2×2 average pooling (no parameters)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None):
        super().__init__()
        out_channels = out_channels or channels
        self.use_conv = use_conv
        if use_conv:
            self.op = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) if self.use_conv else F.avg_pool2d(x, kernel_size=2, stride=2)


class Upsample(nn.Module):
    """Double H and W by nearest interpolation, optionally followed by a 3×3 conv (key ``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None):
        super().__init__()
        out_channels = out_channels or channels
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding (scale-shift or additive).

    x: (B, C_in, H, W), emb: (B, E). Returns (B, C_out, H', W') with H' = H/2, 2H or H for
    ``down``, ``up`` or neither (the resampling has no parameters)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: Optional[int] = None, *,
                 use_scale_shift_norm: bool = False, up: bool = False, down: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(norm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels))
        out_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)
        self.out_layers = nn.Sequential(norm32(out_channels), nn.SiLU(), nn.Dropout(dropout), out_conv)
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = torch.addcmul(shift, self.out_layers[0](h), 1 + scale)  # norm(h)·(1+scale)+shift in one pass
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with the legacy QKV layout. x: (B, C, H, W) -> same shape."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.attention_backend: Optional[str] = None
        self.norm = norm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        h = self.proj_out(legacy_qkv_attention(qkv, self.num_heads, self.attention_backend))
        return (flat + h).reshape(x.shape)


def heads_for(channels: int, num_head_channels: int) -> int:
    if channels % num_head_channels:
        raise ValueError(f"{channels} channels do not split into heads of {num_head_channels}")
    return channels // num_head_channels


def build_encoder(model_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                  attention_levels: Sequence[int], num_head_channels: int, emb_channels: int, *,
                  in_channels: int = 3, use_scale_shift_norm: bool = True, resblock_updown: bool = True,
                  conv_resample: bool = True, dropout: float = 0.0
                  ) -> Tuple[nn.ModuleList, TimestepSequential, List[int], int]:
    """The downward half shared by the ADM UNet and classifier.

    ``attention_levels`` are level indices (0 = full resolution); the official "32,16,8" at 256 px
    is levels (3, 4, 5). Returns (input_blocks, middle_block, skip channel list, bottom channels).
    """
    ch = model_channels
    input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
    skip_chans = [ch]
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            layers: List[nn.Module] = [ResBlock(ch, emb_channels, mult * model_channels,
                                                use_scale_shift_norm=use_scale_shift_norm, dropout=dropout)]
            ch = mult * model_channels
            if level in attention_levels:
                layers.append(AttentionBlock(ch, heads_for(ch, num_head_channels)))
            input_blocks.append(TimestepSequential(*layers))
            skip_chans.append(ch)
        if level != len(channel_mult) - 1:
            if resblock_updown:
                down: nn.Module = ResBlock(ch, emb_channels, ch, use_scale_shift_norm=use_scale_shift_norm,
                                           down=True, dropout=dropout)
            else:
                down = Downsample(ch, conv_resample)
            input_blocks.append(TimestepSequential(down))
            skip_chans.append(ch)
    middle_block = TimestepSequential(
        ResBlock(ch, emb_channels, ch, use_scale_shift_norm=use_scale_shift_norm, dropout=dropout),
        AttentionBlock(ch, heads_for(ch, num_head_channels)),
        ResBlock(ch, emb_channels, ch, use_scale_shift_norm=use_scale_shift_norm, dropout=dropout),
    )
    return input_blocks, middle_block, skip_chans, ch


def time_embed_mlp(model_channels: int) -> nn.Sequential:
    """Linear(mc → 4mc), SiLU, Linear(4mc → 4mc) under keys time_embed.0 / time_embed.2."""
    emb = 4 * model_channels
    return nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
