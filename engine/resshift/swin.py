"""Shifted-window transformer layers of ResShift's denoiser (its ``BasicLayer``), our implementation.

A layer is ``patch_embed.proj`` (1×1 conv to the embedding width), ``blocks.N`` (Swin blocks) and
``patch_unembed.proj`` (1×1 conv back); it has no residual connection of its own. A block is
``x + attention(norm1(x))`` then ``x + mlp(norm2(x))``, with GroupNorm (32 groups) instead of
LayerNorm and a 1×1-conv MLP (``mlp.fc1``, GELU, ``mlp.fc2``). Attention runs inside
``window × window`` windows with a learned relative position bias (``relative_position_bias_table``,
``(2w-1)² × heads``); odd blocks cyclically shift the feature map by ``w/2`` first and mask the
token pairs that the shift brought together from opposite borders.

**The official mask, reproduced exactly.** The weights were trained with the mask the public code
computes, which is not the textbook one: its region labels are written along the row axis only
(the column axis keeps a single region), and the labels of a window's tokens are read column by
column while the tokens themselves are listed row by row. So the label of the token at (row r,
column c) of a window starting at row R is the row label of row R + c. :func:`shifted_window_mask`
builds exactly that (a test compares it with masks computed by the public code).

**Buffers are recomputed.** The official files carry ``relative_position_index`` and ``attn_mask``
buffers; the mask in the file is for a 64×64 latent and the public code never uses it (it compares
a list with a tuple, so it always recomputes the mask for the actual size). Here neither is part
of the state dict: the index is rebuilt from the window size and the mask for each feature size
(cached), so a tile of any size gets the right mask. The loader skips those keys by name.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.attention import GroupNorm32

#: What the public code adds to the attention logits of masked token pairs (not -inf).
MASKED = -100.0


def relative_position_index(window: int) -> torch.Tensor:
    """(w², w²) int64: for tokens i, j of a window, the row of the bias table for their offset."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, w²)
    offset = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, w², w²), in [0, 2w-2]
    return offset[0] * (2 * window - 1) + offset[1]


@lru_cache(maxsize=64)
def _mask(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    row_label = torch.zeros(height)
    if shift:
        row_label[height - window : height - shift] = 1
        row_label[height - shift :] = 2
    # token n = r·w + c of the windows in window-row i takes the label of row i·w + c (see module doc)
    per_window_row = row_label.view(height // window, 1, window).expand(-1, window, -1).reshape(-1, window * window)
    tokens = per_window_row.repeat_interleave(width // window, dim=0)  # (nW, w²), windows in raster order
    differs = tokens[:, None, :] != tokens[:, :, None]
    return torch.where(differs, torch.tensor(MASKED), torch.tensor(0.0)).to(device)


def shifted_window_mask(height: int, width: int, window: int, shift: int,
                        device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(number of windows, w², w²) float32 additive mask (0 or :data:`MASKED`) of a block that
    shifts an ``height × width`` feature map by ``shift``, as the public code builds it (cached
    per size and device)."""
    if height % window or width % window:
        raise ValueError(f"a {height}×{width} feature map does not split into {window}×{window} windows")
    return _mask(height, width, window, shift, torch.device(device))


class WindowAttention(nn.Module):
    """Multi-head attention inside windows: x (B·nW, w², C) -> same shape."""

    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.window, self.heads = window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        count, tokens, dim = x.shape
        head_dim = dim // self.heads
        q, k, v = self.qkv(x).reshape(count, tokens, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(tokens, tokens, self.heads).permute(2, 0, 1)  # (heads, N, N)
        if mask is not None:  # windows of each image in raster order: (images, nW, heads, N, hd)
            windows = mask.shape[0]
            q, k, v = (t.reshape(count // windows, windows, self.heads, tokens, head_dim) for t in (q, k, v))
            bias = bias[None] + mask.to(bias)[:, None]  # (nW, heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        return self.proj(out.reshape(count, self.heads, tokens, head_dim).transpose(1, 2).reshape(count, tokens, dim))


def rebuild_position_indices(net: nn.Module) -> None:
    """Recompute every window attention's ``relative_position_index`` (it is not in the state
    dict, so a network made with ``to_empty`` has garbage there)."""
    for module in net.modules():
        if isinstance(module, WindowAttention):
            device = module.relative_position_bias_table.device
            module.relative_position_index = relative_position_index(module.window).to(device)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """x (B, C, H, W) -> same shape; H and W multiples of ``window``."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_hidden: int):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = GroupNorm32(32, dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = GroupNorm32(32, dim)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        win, s = self.window, self.shift
        y = self.norm1(x)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(2, 3))
        windows = y.view(b, c, h // win, win, w // win, win).permute(0, 2, 4, 3, 5, 1).reshape(-1, win * win, c)
        mask = shifted_window_mask(h, w, win, s, x.device) if s else None
        windows = self.attn(windows, mask)
        y = windows.view(b, h // win, w // win, win, win, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(2, 3))
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchProjection(nn.Module):
    """The 1×1 conv under the key ``proj`` (``patch_embed`` / ``patch_unembed``)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.proj = nn.Conv2d(channels_in, channels_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class SwinLayer(nn.Module):
    """``BasicLayer``: project to ``embed_dim``, ``depth`` blocks (odd ones shifted when
    ``shifted``), project back. x (B, channels, H, W) -> same shape."""

    def __init__(self, channels: int, embed_dim: int, heads: int, window: int, depth: int, mlp_hidden: int,
                 shifted: bool):
        super().__init__()
        self.window = window
        self.patch_embed = PatchProjection(channels, embed_dim)
        self.blocks = nn.ModuleList(
            SwinBlock(embed_dim, heads, window, window // 2 if shifted and i % 2 else 0, mlp_hidden)
            for i in range(depth))
        self.patch_unembed = PatchProjection(embed_dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for block in self.blocks:
            x = block(x)
        return self.patch_unembed(x)
