"""The VQ-f4 autoencoder ResShift works in (latent diffusion's ``VQModel`` as ResShift ships it,
``VQModelTorch``), our implementation.

Keys: ``encoder.*`` and ``decoder.*`` (latent diffusion's Encoder/Decoder: ``conv_in``,
``down.N.block.M`` / ``up.N.block.M`` ResnetBlocks without a timestep, ``downsample.conv`` /
``upsample.conv``, ``mid.block_1``, ``mid.attn_1``, ``mid.block_2``, ``norm_out``, ``conv_out``),
``quant_conv``, ``post_quant_conv`` and ``quantize.embedding.weight`` (the codebook).

``encode`` gives the latent before quantization (what ResShift diffuses); ``decode`` snaps each
latent vector to its nearest codebook entry first, as the public ``decode`` does by default.

Official ``autoencoder_vq_f4``: ch 128, ch_mult (1, 2, 4) (so ×4 smaller), 2 ResBlocks per level,
no attention but the middle one, 3 latent channels, a codebook of 8192 vectors of 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.ddpm_unet import AttnBlock, Downsample, ResnetBlock, Upsample, _Level, _norm

#: Latent vectors compared with the codebook at a time (bounds the distance matrix's memory).
QUANTIZE_CHUNK = 4096


@dataclass(frozen=True)
class AutoencoderConfig:
    """Defaults: the official ``autoencoder_vq_f4``."""

    ch: int = 128
    ch_mult: Tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attention_levels: Tuple[int, ...] = ()  # besides the middle attention, which is always there
    in_channels: int = 3
    out_channels: int = 3
    z_channels: int = 3
    embed_dim: int = 3
    n_embed: int = 8192

    @property
    def factor(self) -> int:
        """Photo pixels per latent pixel along each side."""
        return 2 ** (len(self.ch_mult) - 1)


class _Middle(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, 0)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, z_channels, H/f, W/f)."""

    def __init__(self, c: AutoencoderConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = c.ch
        for level, mult in enumerate(c.ch_mult):
            stage = _Level()
            for _ in range(c.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, c.ch * mult, 0))
                block_in = c.ch * mult
                if level in c.attention_levels:
                    stage.attn.append(AttnBlock(block_in))
            if level != len(c.ch_mult) - 1:
                stage.downsample = Downsample(block_in, True)
            self.down.append(stage)
        self.mid = _Middle(block_in)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = _blocks(stage, h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def _blocks(stage: _Level, h: torch.Tensor) -> torch.Tensor:
    """A level's residual blocks, each followed by its attention where the level has it."""
    for i, block in enumerate(stage.block):
        h = block(h)
        if len(stage.attn):
            h = stage.attn[i](h)
    return h


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> (B, out_channels, h·f, w·f)."""

    def __init__(self, c: AutoencoderConfig):
        super().__init__()
        block_in = c.ch * c.ch_mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, block_in, 3, padding=1)
        self.mid = _Middle(block_in)
        levels = []
        for level in reversed(range(len(c.ch_mult))):
            stage = _Level()
            for _ in range(c.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, c.ch * c.ch_mult[level], 0))
                block_in = c.ch * c.ch_mult[level]
                if level in c.attention_levels:
                    stage.attn.append(AttnBlock(block_in))
            if level != 0:
                stage.upsample = Upsample(block_in, True)
            levels.insert(0, stage)
        self.up = nn.ModuleList(levels)  # up[0] is the full-resolution level, run last
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, c.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = _blocks(stage, h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """The codebook (``embedding.weight``, n_embed × embed_dim) and nearest-entry lookup."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the nearest codebook vectors, same shape (distances in float32)."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c).float()
        book = self.embedding.weight.float()
        book_sq = (book * book).sum(dim=1)
        nearest = torch.empty(flat.shape[0], dtype=torch.long, device=z.device)
        for start in range(0, flat.shape[0], QUANTIZE_CHUNK):
            part = flat[start : start + QUANTIZE_CHUNK]
            distance = (part * part).sum(dim=1, keepdim=True) + book_sq - 2 * part @ book.t()
            nearest[start : start + QUANTIZE_CHUNK] = distance.argmin(dim=1)
        quantized = self.embedding.weight[nearest].to(z.dtype)
        return quantized.view(b, h, w, c).permute(0, 3, 1, 2).contiguous()


class VQAutoencoder(nn.Module):
    """``encode`` (B, 3, H, W) in [-1, 1] -> (B, embed_dim, H/f, W/f); ``decode`` back."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = VectorQuantizer(config.n_embed, config.embed_dim)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(self.quantize(latent)))
