"""The scratch-detection network of Bringing Old Photos Back to Life (Wan et al., CVPR 2020; MIT
licence), written here so that its official weights load key for key.

A U-Net on one gray channel in [-1, 1]: a 7 × 7 reflection-padded stem with ``2**wf`` channels;
``depth`` levels down, each a 3 × 3 convolution with batch norm and leaky ReLU followed by an
anti-aliased stride-2 blur (a fixed binomial 3 × 3 filter, stored as the buffer ``filt``), then
``conv_num`` 3 × 3 convolutions doubling the channels; the same levels up, each a bilinear ×2
upsampling and a 3 × 3 convolution halving the channels, joined with the level's features and
``conv_num`` convolutions; a last 3 × 3 convolution gives the damage logit. Every convolution
pads by reflection. Module names follow the official file (``first``, ``down_sample``,
``down_path``, ``up_path``, ``last``); the options its detector uses are the defaults of
:class:`ScratchNetConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ScratchNetConfig:
    in_channels: int = 1
    out_channels: int = 1
    depth: int = 4  # levels down (and up)
    conv_num: int = 2  # convolutions per level
    wf: int = 6  # the stem has 2**wf channels
    batch_norm: bool = True
    antialiasing: bool = True  # blur-then-subsample; else a strided 4 × 4 convolution

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** self.depth


class BlurDownsample(nn.Module):
    """Binomial [1, 2, 1]² blur with stride 2, reflection padded (anti-aliased downsampling)."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("filt", (kernel / kernel.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


def _convs(count: int, channels_in: int, channels_out: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(count):
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels_in, channels_out, 3)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(channels_out))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        channels_in = channels_out
    return nn.Sequential(*layers)


class _ConvBlock(nn.Module):
    def __init__(self, count: int, channels_in: int, channels_out: int, batch_norm: bool):
        super().__init__()
        self.block = _convs(count, channels_in, channels_out, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _UpBlock(nn.Module):
    def __init__(self, count: int, channels_in: int, channels_out: int, batch_norm: bool):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                nn.ReflectionPad2d(1), nn.Conv2d(channels_in, channels_out, 3))
        self.conv_block = _ConvBlock(count, channels_in, channels_out, batch_norm)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        dy, dx = (bridge.shape[2] - up.shape[2]) // 2, (bridge.shape[3] - up.shape[3]) // 2
        bridge = bridge[:, :, dy : dy + up.shape[2], dx : dx + up.shape[3]]
        return self.conv_block(torch.cat([up, bridge], 1))


class ScratchUNet(nn.Module):
    """``forward(x)``: (B, 1, H, W) gray in [-1, 1], H and W multiples of ``config.multiple`` ->
    (B, 1, H, W) damage logits (sigmoid: probability)."""

    def __init__(self, config: ScratchNetConfig = ScratchNetConfig()):
        super().__init__()
        self.config = config
        width = 2 ** config.wf
        self.first = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(config.in_channels, width, 7),
                                   nn.LeakyReLU(0.2, inplace=True))
        self.down_sample = nn.ModuleList()
        self.down_path = nn.ModuleList()
        channels = width
        for level in range(config.depth):
            if config.antialiasing:
                down = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.BatchNorm2d(channels),
                        nn.LeakyReLU(0.2, inplace=True), BlurDownsample(channels)]
            else:
                down = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 4, stride=2), nn.BatchNorm2d(channels),
                        nn.LeakyReLU(0.2, inplace=True)]
            self.down_sample.append(nn.Sequential(*down))
            self.down_path.append(_ConvBlock(config.conv_num, channels, 2 ** (config.wf + level + 1),
                                             config.batch_norm))
            channels = 2 ** (config.wf + level + 1)
        self.up_path = nn.ModuleList()
        for level in reversed(range(config.depth)):
            self.up_path.append(_UpBlock(config.conv_num, channels, 2 ** (config.wf + level), config.batch_norm))
            channels = 2 ** (config.wf + level)
        self.last = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, config.out_channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        bridges = []
        for down, block in zip(self.down_sample, self.down_path):
            bridges.append(x)
            x = block(down(x))
        for i, up in enumerate(self.up_path):
            x = up(x, bridges[-i - 1])
        return self.last(x)
