"""The one frozen, serializable description of a restoration job. Defaults live here and only here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union, get_args

import numpy as np

from engine.errors import InputError

#: Network precision: ``auto`` picks per device (engine.device.pick_precision).
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISION_CHOICES: tuple[str, ...] = get_args(Precision)
#: How a CPU's description says that it computes bf16 in hardware (where ``auto`` picks bf16); the
#: app's time estimate reads it without importing torch.
NATIVE_BF16_LABEL = "native bf16"

#: A path to an image file, or pixels already in memory: (H, W) or (H, W, C) uint8/uint16/float.
ImageSource = Union[str, np.ndarray]


@dataclass(frozen=True)
class Quirks:
    """Parity switches that reproduce the reference code's behaviour. All off = the paper."""

    simplified_noise: bool = False  # main.py --simplified: γ uses sqrt(1 - ᾱ²) and ᾱ instead of sqrt(ᾱ)
    lambda_precedence: bool = False  # hq_demo: λ = σ_t / a_t · σ_y instead of σ_t / (a_t σ_y)
    travel_from_x0: bool = False  # main.py: time travel re-noises the raw x0 instead of a forward chain
    clip_x0: bool = False  # hq_demo clamps x0 to [-1, 1]
    sigma_y_unscaled: bool = False  # hq_demo uses σ_y as given, without the ×2 for the [-1, 1] range
    carry_state_across_windows: bool = False  # hq_demo: window k starts from window k-1's sample
    ddrm_kernel_taps: bool = False  # DDRM/DDNM SVD path drops the last tap of odd blur kernels


@dataclass(frozen=True)
class Tasks:
    """What to do to the photo. Any combination; the operators are composed in this order:
    mask (inpaint) ∘ gray (colorize) ∘ blur (deblur) ∘ downscale (sr)."""

    inpaint: bool = False  # needs RestoreRequest.mask (white/nonzero = fill this pixel)
    colorize: bool = False
    sr: int = 1  # output is sr times the input
    sr_kernel: Literal["avgpool", "bicubic"] = "avgpool"
    deblur: Optional[str] = None  # "gauss:SIGMA" | "uniform:SIZE" | "kernel:PATH"
    noise: float = 0.0  # σ_y of the photo's noise, in [0, 1] pixel units (0 = noiseless DDNM)

    def any(self) -> bool:
        return self.inpaint or self.colorize or self.sr > 1 or bool(self.deblur) or self.noise > 0


@dataclass(frozen=True)
class RestoreRequest:
    image: ImageSource
    tasks: Tasks = field(default_factory=Tasks)
    mask: Optional[ImageSource] = None
    model: str = "adm-256-uncond"  # catalog id, a checkpoint path, or "test-tiny"
    class_label: Optional[int] = None  # ImageNet class for the class-conditional ADM
    guidance_scale: float = 0.0  # classifier guidance scale (0 = off)
    steps: int = 100
    travel_length: int = 1  # RePaint time travel L (1 with repeat 1 = no travel)
    travel_repeat: int = 1  # r
    eta: float = 0.85
    sampler: Literal["ddim", "ddpm"] = "ddim"  # DDIM/DDRM η form, or DDPM posterior (hq_demo) form
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: Precision = "auto"  # auto: engine.device.pick_precision
    compile: bool = False  # torch.compile the network (compiles once per machine, cached on disk)
    # tiling (MSR / HiR)
    tiling: Literal["auto", "none", "msr"] = "auto"
    hir: Optional[bool] = None  # None = on where it helps (large outputs)
    hir_start: Optional[int] = None  # HiR phase 2 starts from phase 1's result noised to this t (None: from noise)
    window: int = 256
    overlap: int = 128
    batch: Union[int, Literal["auto"]] = "auto"
    resume_dir: Optional[str] = None  # where interrupted-job state is kept (and resumed from)
    quirks: Quirks = field(default_factory=Quirks)

    def __post_init__(self) -> None:
        t = self.tasks
        if t.sr < 1:
            raise InputError(f"upscale factor must be a whole number ≥ 1, got {t.sr}")
        if t.inpaint and self.mask is None:
            raise InputError("filling masked areas needs a mask")
        if self.steps < 1 or self.steps > 1000:
            raise InputError(f"steps must be between 1 and 1000, got {self.steps}")
        if self.travel_length < 1 or self.travel_repeat < 1:
            raise InputError("time travel length and repeat must be ≥ 1")
        if not 0.0 <= self.eta <= 1.0:
            raise InputError(f"eta must be in [0, 1], got {self.eta}")
        if t.noise < 0:
            raise InputError("noise level must be ≥ 0")
        if self.hir_start is not None and not 0 < self.hir_start < 1000:
            raise InputError(f"the HiR warm start must be a timestep in 1..999, got {self.hir_start}")
        if not 0 <= self.overlap < self.window:
            raise InputError(f"overlap must be in [0, window), got {self.overlap} for window {self.window}")

    def replace(self, **changes: Any) -> "RestoreRequest":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict. In-memory arrays become a fingerprint (shape + sha256)."""

        def enc(value: Any) -> Any:
            if isinstance(value, np.ndarray):
                digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
                return {"array": list(value.shape), "dtype": str(value.dtype), "sha256": digest}
            return value

        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else enc(v)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RestoreRequest":
        d = dict(d)
        d["tasks"] = Tasks(**d.get("tasks", {}))
        d["quirks"] = Quirks(**d.get("quirks", {}))
        for key in ("image", "mask"):
            if isinstance(d.get(key), dict):
                raise InputError(f"the request's {key} was an in-memory array and cannot be re-read")
        return cls(**d)
