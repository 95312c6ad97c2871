"""Denoiser and guidance wrappers: the checkpoint quirks stay here, samplers stay plain.

``EpsDenoiser`` turns any of our UNets into the ``Denoiser`` protocol (original timesteps, ε only,
class label bound, autocast precision, float32 out). ``ClassifierGuidance`` implements the
``Guidance`` protocol with an ADM classifier: scale · ∇_{x_t} log p(c | x_t, t).
"""

from __future__ import annotations

import contextlib
from typing import Optional, Union

import torch
from torch import nn

from engine.errors import InputError
from engine.models.checkpoint import ModelConfig

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
ClassLabel = Union[int, torch.Tensor, None]


def autocast_context(device: torch.device, precision: str):
    """``torch.autocast`` for fp16/bf16 on ``device``; a no-op context for fp32."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _check_labels(class_label: ClassLabel, num_classes: int) -> None:
    values = torch.as_tensor(class_label).reshape(-1).tolist()
    if not values or min(values) < 0 or max(values) >= num_classes:
        got = values[0] if len(values) == 1 else values
        raise InputError(f"the class must be between 0 and {num_classes - 1}, got {got}")


def _labels(class_label: ClassLabel, batch: int, device: torch.device) -> torch.Tensor:
    """A class label as a (B,) int64 tensor; a single int is repeated over the batch."""
    labels = torch.as_tensor(class_label, dtype=torch.long, device=device).reshape(-1)
    if labels.numel() == 1:
        labels = labels.expand(batch)
    if labels.numel() != batch:
        raise InputError(f"got {labels.numel()} class labels for a batch of {batch}")
    return labels


class EpsDenoiser:
    """``eps = denoiser(x_t, t)`` for an ADM UNet or a DDPM Model.

    x_t: (B, 3, H, W) float32 in model space, H and W multiples of ``config.size_multiple``;
    t: (B,) int64 original timesteps 0..999 (a scalar or 0-d tensor is broadcast).
    Returns ε (B, 3, H, W) float32 (learned-sigma channels 3..5 are dropped).
    ``name`` is the model as the user chose it (id or path), for the messages.
    """

    def __init__(self, net: nn.Module, config: ModelConfig, *, class_label: ClassLabel = None,
                 precision: str = "fp32", is_random: bool = False, image_size: Optional[int] = None,
                 channels_last: bool = False, name: Optional[str] = None):
        if config.family not in ("adm", "ddpm"):
            raise InputError(f"a {config.family} network cannot denoise; load a diffusion UNet")
        autocast_context(torch.device("cpu"), precision)  # validates the name
        # what the user chose, in words for the app and the command line alike (not field names)
        model = f"model {name}" if name else "the model"
        if config.class_cond and class_label is None:
            raise InputError(f"{model} is class-conditional: choose its class (an ImageNet class "
                             f"0..{config.num_classes - 1})")
        if not config.class_cond and class_label is not None:
            raise InputError(f"a class was given, but {model} is unconditional: leave the class out")
        if config.class_cond:
            _check_labels(class_label, config.num_classes)
        self.net = net
        self.config = config
        self.class_label = class_label
        self.precision = precision
        self.is_random = is_random
        self.image_size = image_size or config.image_size
        #: feed inputs in channels_last memory format (pair with a channels_last network)
        self.channels_last = channels_last

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        batch = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        extra = {}
        if self.config.class_cond:
            extra["y"] = _labels(self.class_label, batch, x_t.device)
        x = x_t.float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast_context(x_t.device, self.precision):
            out = self.net(x, t.long(), **extra)
        return out[:, : self.config.in_channels].float()

    def __repr__(self) -> str:
        return (f"EpsDenoiser({self.config.family}, {self.config.model_channels} ch, precision={self.precision}, "
                f"image_size={self.image_size}, is_random={self.is_random})")


class ClassifierGuidance:
    """``g = guidance(x_t, t)`` = scale · ∇_{x_t} log softmax(classifier(x_t, t))[c].

    x_t: (B, 3, H, W); t: (B,) original timesteps. Gradients are taken at x_t itself, each
    sample w.r.t. its own label. Returns x_t's shape, float32 (float64 for float64 input)."""

    def __init__(self, classifier: nn.Module, class_label: ClassLabel, scale: float, *,
                 precision: str = "fp32", num_classes: Optional[int] = None):
        if class_label is None:
            raise InputError("classifier guidance needs a class label")
        autocast_context(torch.device("cpu"), precision)
        self.classifier = classifier
        self.class_label = class_label
        self.scale = float(scale)
        self.precision = precision
        self.num_classes = num_classes
        if num_classes is not None:
            _check_labels(class_label, num_classes)

    def log_prob(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p(c | x_t, t) per sample: (B,) float32 (differentiable w.r.t. x_t)."""
        batch = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        with autocast_context(x_t.device, self.precision):
            logits = self.classifier(x_t, t.long())
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        labels = _labels(self.class_label, batch, x_t.device)
        return logp[torch.arange(batch, device=x_t.device), labels]

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(False), torch.enable_grad():
            x = x_t.detach().clone()
            x = x.to(torch.promote_types(x.dtype, torch.float32)).requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_prob(x, t).sum(), x)
        return grad * self.scale
