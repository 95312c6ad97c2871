"""The ADM UNet (OpenAI guided-diffusion ``UNetModel``), our implementation.

Official 256×256 configuration: model_channels 256, channel_mult (1,1,2,2,4,4), 2 res blocks,
attention at 32/16/8 px (levels 3, 4, 5), 64 channels per head, scale-shift norm, resblock
up/down, learned sigma (6 output channels), optional class conditioning (``label_emb``).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from engine.models.adm_blocks import (
    AttentionBlock,
    ResBlock,
    TimestepSequential,
    Upsample,
    adm_timestep_embedding,
    build_encoder,
    heads_for,
    norm32,
    time_embed_mlp,
)


class ADMUNet(nn.Module):
    """ε-prediction UNet. ``forward(x, t, y=None)``:

    x: (B, in_channels, H, W) with H, W multiples of 2**(len(channel_mult)-1); t: (B,) original
    timesteps 0..999; y: (B,) int64 class labels (class-conditional models only).
    Returns (B, out_channels, H, W): ε, followed by the variance interpolation v when
    ``out_channels`` is 6 (learned sigma).
    """

    def __init__(self, *, model_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 attention_levels: Sequence[int], num_head_channels: int = 64, in_channels: int = 3,
                 out_channels: int = 6, num_classes: Optional[int] = None, use_scale_shift_norm: bool = True,
                 resblock_updown: bool = True, conv_resample: bool = True, dropout: float = 0.0):
        super().__init__()
        self.model_channels = model_channels
        self.num_classes = num_classes
        self.levels = len(channel_mult)
        emb_channels = 4 * model_channels
        self.time_embed = time_embed_mlp(model_channels)
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_channels)
        self.input_blocks, self.middle_block, skip_chans, ch = build_encoder(
            model_channels, channel_mult, num_res_blocks, attention_levels, num_head_channels, emb_channels,
            in_channels=in_channels, use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown, conv_resample=conv_resample, dropout=dropout)
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                skip = skip_chans.pop()
                layers: List[nn.Module] = [ResBlock(ch + skip, emb_channels, model_channels * mult,
                                                    use_scale_shift_norm=use_scale_shift_norm, dropout=dropout)]
                ch = model_channels * mult
                if level in attention_levels:
                    layers.append(AttentionBlock(ch, heads_for(ch, num_head_channels)))
                if level and i == num_res_blocks:
                    if resblock_updown:
                        layers.append(ResBlock(ch, emb_channels, ch, use_scale_shift_norm=use_scale_shift_norm,
                                               up=True, dropout=dropout))
                    else:
                        layers.append(Upsample(ch, conv_resample))
                self.output_blocks.append(TimestepSequential(*layers))
        out_conv = nn.Conv2d(ch, out_channels, 3, padding=1)
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)
        self.out = nn.Sequential(norm32(ch), nn.SiLU(), out_conv)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        multiple = 2 ** (self.levels - 1)
        if x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise ValueError(f"ADM UNet input sides must be multiples of {multiple}, got {tuple(x.shape[-2:])}")
        emb = self.time_embed(adm_timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype))
        if self.num_classes is not None:
            if y is None:
                raise ValueError("this class-conditional UNet needs class labels y")
            emb = emb + self.label_emb(y)
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop().to(h.dtype)], dim=1), emb)
        return self.out(h)
