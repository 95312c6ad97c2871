"""Random-weight stage-1 networks built from spandrel's own architecture classes at small sizes,
saved as a user's file would be (.pth with a training wrapper, or .safetensors)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", message="torch.meshgrid")  # inside spandrel's SCUNet


def compact(scale: int = 1, seed: int = 0):
    """Real-ESRGAN Compact: 4 convolutions (receptive-field radius 4 px), then a pixel shuffle."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    return Compact(num_feat=8, num_conv=2, upscale=scale)


def esrgan(scale: int = 4, seed: int = 0):
    """ESRGAN / RRDBNet (BSRNet, Real-ESRGAN x4plus) with one block of 8 features."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    net = ESRGAN(num_filters=8, num_blocks=1, scale=scale)
    for p in net.parameters():  # default init gives all-zero outputs after the final ReLU-free conv clamp
        torch.nn.init.normal_(p, std=0.05)
    return net


def scunet(seed: int = 0):
    """SCUNet (DiffBIR v2's stage 1) with one block per level (dim 64 is the smallest that works)."""
    from spandrel.architectures.SCUNet import SCUNet

    torch.manual_seed(seed)
    return SCUNet(config=[1, 1, 1, 1, 1, 1, 1], dim=64)


def swinir(seed: int = 0):
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    return SwinIR(embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=4, upsampler="nearest+conv",
                  img_size=16)


def gray_dncnn(seed: int = 0):
    """DnCNN for gray photos (1 channel in and out), 17 layers of 16 features."""
    from spandrel.architectures.DnCNN import DnCNN

    torch.manual_seed(seed)
    return DnCNN(in_nc=1, out_nc=1, nc=16, nb=17)


def save(net, path: Path, wrapper: str | None = "params") -> Path:
    """``path`` ending .safetensors is written with safetensors; anything else with torch.save,
    wrapped as training code writes it (``{"params": state_dict}``) unless ``wrapper`` is None."""
    path = Path(path)
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save({wrapper: sd} if wrapper else sd, path)
    return path


def smooth_photo(h: int, w: int, seed: int = 1) -> np.ndarray:
    """(h, w, 3) float32 [0, 1]: smooth shapes and a little grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([0.5 + 0.4 * np.sin(xx / 7 + c) * np.cos(yy / 9 - c) for c in range(3)], axis=-1)
    return np.clip(base + 0.03 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)
