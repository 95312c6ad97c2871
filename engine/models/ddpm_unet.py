"""The DDPM ``Model`` of ddim / SDEdit (CelebA-HQ, LSUN checkpoints), our implementation.

Official CelebA-HQ configuration: ch 128, ch_mult (1,1,2,2,4,4), 2 res blocks, attention at 16 px
(level 4 at 256 px) and in the middle, conv resampling, ε output (3 channels).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.attention import GroupNorm32, attend_channels_first


def ddpm_timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding, DDPM convention: [sin, cos], frequencies exp(-ln(10000)·i/(half-1)).

    t: (B,) original timesteps 0..999. Returns (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -(math.log(10000.0) / (half - 1)))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """x: (B, C_in, H, W), temb: (B, E) -> (B, C_out, H, W). With ``temb_channels`` 0 the block
    takes no timestep (no ``temb_proj``: the autoencoders of latent diffusion)."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        if temb_channels:
            self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.temb_proj(F.silu(temb)).to(h.dtype)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1×1 conv q, k, v, proj_out; scale C^-1/2."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention_backend: Optional[str] = None
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q, k, v = (conv(h).reshape(b, c, hh * ww) for conv in (self.q, self.k, self.v))
        out = attend_channels_first(q, k, v, self.attention_backend).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class Upsample(nn.Module):
    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class _Level(nn.Module):
    """One resolution level: ``block`` (res blocks), ``attn`` (maybe empty), optional resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _TimeEmbedding(nn.Module):
    def __init__(self, ch: int, temb_ch: int):
        super().__init__()
        self.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])


class DDPMUNet(nn.Module):
    """``forward(x, t)``: x (B, in_channels, H, W), H and W multiples of 2**(len(ch_mult)-1);
    t (B,) original timesteps 0..999. Returns ε (B, out_ch, H, W).

    ``attention_levels`` are level indices (0 = full resolution); CelebA-HQ's ``attn_resolutions
    [16]`` at 256 px is level 4."""

    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attention_levels: Sequence[int],
                 in_channels: int = 3, out_ch: int = 3, resamp_with_conv: bool = True, dropout: float = 0.0):
        super().__init__()
        self.ch = ch
        self.levels = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.temb = _TimeEmbedding(ch, 4 * ch)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_mult = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for level in range(self.levels):
            down = _Level()
            block_in, block_out = ch * in_mult[level], ch * ch_mult[level]
            for _ in range(num_res_blocks):
                down.block.append(ResnetBlock(block_in, block_out, 4 * ch, dropout))
                block_in = block_out
                if level in attention_levels:
                    down.attn.append(AttnBlock(block_in))
            if level != self.levels - 1:
                down.downsample = Downsample(block_in, resamp_with_conv)
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, 4 * ch, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, 4 * ch, dropout)
        ups = []
        for level in reversed(range(self.levels)):
            up = _Level()
            block_out, skip_in = ch * ch_mult[level], ch * ch_mult[level]
            for i in range(num_res_blocks + 1):
                if i == num_res_blocks:
                    skip_in = ch * in_mult[level]
                up.block.append(ResnetBlock(block_in + skip_in, block_out, 4 * ch, dropout))
                block_in = block_out
                if level in attention_levels:
                    up.attn.append(AttnBlock(block_in))
            if level != 0:
                up.upsample = Upsample(block_in, resamp_with_conv)
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        multiple = 2 ** (self.levels - 1)
        if x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise ValueError(f"DDPM UNet input sides must be multiples of {multiple}, got {tuple(x.shape[-2:])}")
        temb = ddpm_timestep_embedding(t, self.ch).to(self.temb.dense[0].weight.dtype)
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](temb)))
        hs = [self.conv_in(x)]
        for level, down in enumerate(self.down):
            for i, block in enumerate(down.block):
                h = block(hs[-1], temb)
                if len(down.attn):
                    h = down.attn[i](h)
                hs.append(h)
            if level != self.levels - 1:
                hs.append(down.downsample(hs[-1]))
        h = hs[-1]
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, temb)), temb)
        for level in reversed(range(self.levels)):
            up = self.up[level]
            for i, block in enumerate(up.block):
                h = block(torch.cat([h, hs.pop().to(h.dtype)], dim=1), temb)
                if len(up.attn):
                    h = up.attn[i](h)
            if level != 0:
                h = up.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
