"""The ADM noisy-image classifier (guided-diffusion ``EncoderUNetModel`` with attention pooling).

Official 256×256 classifier: width 128, channel_mult (1,1,2,2,4,4), depth 2, attention at
32/16/8 px (levels 3, 4, 5), 64 channels per head, scale-shift norm, resblock up/down,
``out = [GroupNorm, SiLU, AttentionPool2d(8×8 tokens + mean token, 1000 classes)]``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.adm_blocks import adm_timestep_embedding, build_encoder, heads_for, norm32, time_embed_mlp
from engine.models.attention import split_qkv_attention


class AttentionPool2d(nn.Module):
    """Attention pooling (CLIP style): the mean token attends over all tokens; returns logits.

    x: (B, C, h, w) -> (B, output_dim). ``positional_embedding`` is (C, side² + 1). Inputs whose
    token grid differs from ``side×side`` get the grid part of the embedding resized bilinearly
    (an extension: the official code only accepts its training size)."""

    def __init__(self, side: int, embed_dim: int, num_head_channels: int, output_dim: int):
        super().__init__()
        self.side = side
        self.num_heads = heads_for(embed_dim, num_head_channels)
        self.attention_backend: Optional[str] = None
        self.positional_embedding = nn.Parameter(torch.randn(embed_dim, side * side + 1) / embed_dim ** 0.5)
        self.qkv_proj = nn.Conv1d(embed_dim, 3 * embed_dim, 1)
        self.c_proj = nn.Conv1d(embed_dim, output_dim, 1)

    def _positions(self, h: int, w: int) -> torch.Tensor:
        pos = self.positional_embedding
        if (h, w) == (self.side, self.side):
            return pos
        grid = pos[:, 1:].reshape(1, -1, self.side, self.side)
        grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False).reshape(pos.shape[0], h * w)
        return torch.cat([pos[:, :1], grid], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        flat = torch.cat([flat.mean(dim=-1, keepdim=True), flat], dim=-1)
        flat = flat + self._positions(h, w)[None].to(flat.dtype)
        out = split_qkv_attention(self.qkv_proj(flat), self.num_heads, self.attention_backend)
        return self.c_proj(out)[:, :, 0]


class ADMClassifier(nn.Module):
    """``forward(x, t)``: x (B, 3, S, S) noisy image in [-1, 1]-ish model space, t (B,) original
    timesteps 0..999. Returns logits (B, num_classes) (float32 unless run under autocast)."""

    def __init__(self, *, image_size: int, model_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 attention_levels: Sequence[int], num_head_channels: int = 64, in_channels: int = 3,
                 num_classes: int = 1000, use_scale_shift_norm: bool = True, resblock_updown: bool = True,
                 conv_resample: bool = True):
        super().__init__()
        self.model_channels = model_channels
        self.image_size = image_size
        emb_channels = 4 * model_channels
        self.time_embed = time_embed_mlp(model_channels)
        self.input_blocks, self.middle_block, _, ch = build_encoder(
            model_channels, channel_mult, num_res_blocks, attention_levels, num_head_channels, emb_channels,
            in_channels=in_channels, use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown, conv_resample=conv_resample)
        side = image_size // 2 ** (len(channel_mult) - 1)
        self.out = nn.Sequential(norm32(ch), nn.SiLU(), AttentionPool2d(side, ch, num_head_channels, num_classes))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(adm_timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype))
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
        h = self.middle_block(h, emb)
        return self.out(h)
