"""ResShift test files: random weights at the tiny configuration, written as the official files are
(the denoiser's state dict with its Swin buffers, under a ``state_dict`` wrapper with DDP's
``module.`` prefix; the autoencoder's plain state dict), so loading goes through every path a
real file takes."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.models.tiny import randomize_weights
from engine.resshift.autoencoder import VQAutoencoder
from engine.resshift.load import tiny_configs
from engine.resshift.swin import SwinBlock, WindowAttention, relative_position_index, shifted_window_mask
from engine.resshift.unet import SwinUNet

UNET_FILE, AUTOENCODER_FILE = "resshift_realsrx4_s4_v3.pth", "autoencoder_vq_f4.pth"


def tiny_networks(seed: int = 3) -> tuple[SwinUNet, VQAutoencoder]:
    unet_config, ae_config = tiny_configs()
    unet = randomize_weights(SwinUNet(unet_config), seed).eval()
    return unet, randomize_weights(VQAutoencoder(ae_config), seed + 1).eval()


def official_buffers(unet: SwinUNet) -> dict[str, torch.Tensor]:
    """The buffers the public code stores: every attention's relative_position_index, and the
    attn_mask of every shifted block for the feature size it has at the nominal latent size."""
    sizes, hooks = {}, []

    def record(name):
        def hook(module, args, out):
            sizes[name] = tuple(args[0].shape[-2:])
        return hook

    for name, module in unet.named_modules():
        if isinstance(module, SwinBlock):
            hooks.append(module.register_forward_hook(record(name)))
    n = unet.config.image_size
    with torch.no_grad():
        unet(torch.zeros(1, unet.config.latent_channels, n, n), torch.zeros(1, dtype=torch.long),
             torch.zeros(1, unet.config.photo_channels, n, n))
    for hook in hooks:
        hook.remove()
    buffers = {}
    for name, module in unet.named_modules():
        if isinstance(module, WindowAttention):
            buffers[f"{name}.relative_position_index"] = relative_position_index(module.window)
        if isinstance(module, SwinBlock) and module.shift:
            buffers[f"{name}.attn_mask"] = shifted_window_mask(*sizes[name], module.window, module.shift)
    return buffers


def write_unet(path: Path, unet: SwinUNet, prefix: str = "module.", wrapper: bool = True) -> Path:
    sd = {**unet.state_dict(), **official_buffers(unet)}
    sd = {prefix + k: v for k, v in sd.items()}
    torch.save({"state_dict": sd} if wrapper else sd, path)
    return path


def write_autoencoder(path: Path, autoencoder: VQAutoencoder) -> Path:
    torch.save(autoencoder.state_dict(), path)
    return path


def write_files(folder: Path, seed: int = 3) -> tuple[Path, Path]:
    """The two files under their official names in ``folder`` (e.g. a models folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    unet, autoencoder = tiny_networks(seed)
    return write_unet(folder / UNET_FILE, unet), write_autoencoder(folder / AUTOENCODER_FILE, autoencoder)
