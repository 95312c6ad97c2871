"""ResShift's denoiser (its ``UNetModelSwin``), our implementation.

An ADM-style UNet (ResBlocks with scale-shift norm, conv down/up sampling, the same key names:
``time_embed``, ``input_blocks``, ``middle_block``, ``output_blocks``, ``out``) whose attention
layers are Swin layers (:mod:`engine.resshift.swin`): one after the first ResBlock of each level
listed in ``swin_levels`` (and after the first ResBlock of the way back up at those levels), and
one in the middle. The input is the noisy latent concatenated with the low-resolution photo in
[-1, 1] (same size as the latent: the VQ-f4 latent of the ×4 photo has the photo's own size);
the output is the predicted clean latent x0.

Official real-world ×4 configuration (``realsr_swinunet_realesrgan256_journal.yaml``, and the
same layout for the earlier 15-step models): 160 channels, mult (1, 2, 2, 4), 2 ResBlocks per
level, Swin layers at every level (latent 64/32/16/8), embedding 192, 6 heads (32 channels
each), window 8, depth 2, MLP ratio 4, 3 latent + 3 photo channels in, 3 out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch import nn

from engine.models.adm_blocks import (
    Downsample,
    ResBlock,
    TimestepSequential,
    Upsample,
    adm_timestep_embedding,
    norm32,
    time_embed_mlp,
)
from engine.resshift.swin import SwinLayer


@dataclass(frozen=True)
class SwinUNetConfig:
    """Everything needed to build the denoiser. Defaults: the official real-world ×4 model."""

    model_channels: int = 160
    channel_mult: Tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: Tuple[int, ...] = (2, 2, 2, 2)
    latent_channels: int = 3
    photo_channels: int = 3  # the low-resolution photo concatenated with the latent
    out_channels: int = 3
    swin_levels: Tuple[int, ...] = (0, 1, 2, 3)  # the official attention_resolutions 64,32,16,8
    embed_dim: int = 192
    heads: int = 6
    window: int = 8
    depth: int = 2
    mlp_hidden: int = 768
    #: the latent size the model was built for (not in the weights; every official file: 64). It
    #: decides which layers shift their windows: those whose feature map is larger than a window.
    image_size: int = 64
    conv_resample: bool = True

    def window_at(self, level: int) -> int:
        """The public code shrinks the window to the feature map where the map is not larger."""
        return min(self.window, self.image_size // 2 ** level)

    def shifted_at(self, level: int) -> bool:
        return self.image_size // 2 ** level > self.window

    @property
    def size_multiple(self) -> int:
        """Latent sides must be multiples of this: every level's map must split into windows."""
        levels = set(self.swin_levels) | {len(self.channel_mult) - 1}
        return math.lcm(*(2 ** level * self.window_at(level) for level in levels))


class SwinUNet(nn.Module):
    """``forward(x, t, photo)``: x (B, latent_channels, H, W) scaled noisy latent, t (B,) step
    indices, photo (B, photo_channels, H, W) in [-1, 1] -> (B, out_channels, H, W) predicted x0.
    H and W must be multiples of ``config.size_multiple``."""

    def __init__(self, config: SwinUNetConfig):
        super().__init__()
        c = self.config = config
        mc, emb = c.model_channels, 4 * c.model_channels
        self.time_embed = time_embed_mlp(mc)

        def res(ch_in: int, ch_out: int) -> ResBlock:
            return ResBlock(ch_in, emb, ch_out, use_scale_shift_norm=True)

        def swin(ch: int, level: int) -> SwinLayer:
            return SwinLayer(ch, c.embed_dim, c.heads, c.window_at(level), c.depth, c.mlp_hidden, c.shifted_at(level))

        ch = mc * c.channel_mult[0]
        self.input_blocks = nn.ModuleList(
            [TimestepSequential(nn.Conv2d(c.latent_channels + c.photo_channels, ch, 3, padding=1))])
        skips = [ch]
        last = len(c.channel_mult) - 1
        for level, mult in enumerate(c.channel_mult):
            for j in range(c.num_res_blocks[level]):
                layers: List[nn.Module] = [res(ch, mc * mult)]
                ch = mc * mult
                if level in c.swin_levels and j == 0:
                    layers.append(swin(ch, level))
                self.input_blocks.append(TimestepSequential(*layers))
                skips.append(ch)
            if level != last:
                self.input_blocks.append(TimestepSequential(Downsample(ch, c.conv_resample)))
                skips.append(ch)
        self.middle_block = TimestepSequential(res(ch, ch), swin(ch, last), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks[level] + 1):
                layers = [res(ch + skips.pop(), mc * mult)]
                ch = mc * mult
                if level in c.swin_levels and i == 0:
                    layers.append(swin(ch, level))
                if level and i == c.num_res_blocks[level]:
                    layers.append(Upsample(ch, c.conv_resample))
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(norm32(ch), nn.SiLU(), nn.Conv2d(ch, c.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        multiple = self.config.size_multiple
        if x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise ValueError(f"the denoiser's input sides must be multiples of {multiple}, got {tuple(x.shape[-2:])}")
        weight = self.time_embed[0].weight
        emb = self.time_embed(adm_timestep_embedding(t, self.config.model_channels).to(weight.dtype))
        h = torch.cat([x, photo.to(x.dtype)], dim=1)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
