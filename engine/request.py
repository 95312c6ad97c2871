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


#: The classifier that guides class-conditional models unless a request names another.
DEFAULT_CLASSIFIER = "adm-256-classifier"

#: ``RestoreRequest.mask`` that asks for the damage the default detector finds (engine.detection)
MASK_AUTO = "auto"

#: Fidelity of a two-stage run (engine/cleanup/fidelity.py): between the cleaned photo and realness.
DEFAULT_FIDELITY = 0.5

#: The smallest window the networks take (they downsample 5 times).
MIN_WINDOW = 32


def _whole(name: str, value: Any, low: int, high: Optional[int] = None) -> int:
    """``value`` as a plain int; it must be a whole number (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InputError(f"{name} must be {span}, got {value}")
    return int(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def array_digest(value: np.ndarray) -> str:
    """sha256 of an array's bytes in C order, read in place (no full-size copy of a contiguous array)."""
    return hashlib.sha256(np.ascontiguousarray(value).data).hexdigest()


def _switch(doc: str) -> Any:
    """A parity switch, off by default; ``doc`` (what the reference does) is shown by the CLI's --help."""
    return field(default=False, metadata={"doc": doc})


@dataclass(frozen=True)
class Quirks:
    """Parity switches that reproduce the reference code's behaviour. All off = the paper.

    DDNM's ``main.py --simplified`` is skip_spacing + simplified_noise + travel_from_x0 (DDIM form);
    hq_demo is clip_x0 + lambda_precedence + sigma_y_unscaled + carry_state_across_windows (DDPM form).
    """

    simplified_noise: bool = _switch("main.py --simplified: the injected noise uses sqrt(1 - ᾱ²) and ᾱ "
                                     "instead of sqrt(ᾱ)")
    lambda_precedence: bool = _switch("hq_demo: λ = σ_t / a_t · σ_y instead of σ_t / (a_t σ_y)")
    travel_from_x0: bool = _switch("main.py: time travel re-noises the raw x0 instead of a forward chain")
    clip_x0: bool = _switch("hq_demo: x0 is clamped to [-1, 1]")
    sigma_y_unscaled: bool = _switch("hq_demo: σ_y is used as given, without the ×2 for the [-1, 1] range")
    carry_state_across_windows: bool = _switch("hq_demo: window k starts from window k-1's sample")
    ddrm_kernel_taps: bool = _switch("DDRM/DDNM SVD path: the last tap of odd blur kernels is dropped")
    skip_spacing: bool = _switch("main.py: the timesteps are multiples of 1000 // steps (the first call at "
                                 "990 for 100 steps) instead of evenly spaced from 999")


def quirk_docs() -> dict[str, str]:
    """Each parity switch's name and what it reproduces."""
    return {f.name: f.metadata["doc"] for f in dataclasses.fields(Quirks)}


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
    mask: Optional[ImageSource] = None  # white = fill; MASK_AUTO: the damage the detector finds
    model: str = "adm-256-uncond"  # catalog id, a checkpoint path, or "test-tiny"
    class_label: Optional[int] = None  # ImageNet class for the class-conditional ADM
    guidance_scale: float = 0.0  # classifier guidance scale (0 = off)
    classifier: str = DEFAULT_CLASSIFIER  # the ADM classifier for guidance: catalog/imported id or a file
    # a fast upscaler (catalog/imported id or a file, e.g. resshift-realsr-x4) that does the ×sr before the
    # engine, as its pre-stage at fidelity 1 (engine/cleanup/stage.py); None: the engine upscales. A fast
    # upscaler given as ``model`` moves here (engine.resshift.stage.fast_upscale_request)
    upscaler: Optional[str] = None
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
    # two stages (engine/cleanup): a restoration network cleans the photo, then the model above restores it
    cleanup: Optional[str] = None  # stage-1 network: catalog/imported id or file (None: one stage; not with upscaler)
    fidelity: float = DEFAULT_FIDELITY  # 1 = the cleaned photo as is ... 0 = most realness (engine/cleanup/fidelity.py)
    warm_start: bool = False  # fast: stage 2 starts from the cleaned photo, noised, with fewer steps
    quirks: Quirks = field(default_factory=Quirks)

    def __post_init__(self) -> None:
        # whole numbers are stored as plain ints (numpy integers too: the request is JSON)
        t = dataclasses.replace(self.tasks, sr=_whole("upscale factor", self.tasks.sr, 1))
        object.__setattr__(self, "tasks", t)
        _choice("upscale kernel", t.sr_kernel, ("avgpool", "bicubic"))
        if t.inpaint and self.mask is None:
            raise InputError("filling masked areas needs a mask")
        for name, label, low, high in (("steps", "steps", 1, 1000), ("travel_length", "time travel length", 1, None),
                                       ("travel_repeat", "time travel repeat", 1, None), ("seed", "seed", 0, None),
                                       ("window", "window", MIN_WINDOW, None), ("overlap", "overlap", 0, None)):
            object.__setattr__(self, name, _whole(label, getattr(self, name), low, high))
        if self.batch != "auto":
            object.__setattr__(self, "batch", _whole("batch", self.batch, 1))
        _choice("sampler", self.sampler, ("ddim", "ddpm"))
        _choice("tiling", self.tiling, ("auto", "none", "msr"))
        _choice("precision", self.precision, PRECISION_CHOICES)
        if not 0.0 <= self.eta <= 1.0:
            raise InputError(f"eta must be in [0, 1], got {self.eta}")
        if not 0.0 <= t.noise <= 1.0:
            raise InputError(f"the noise level must be in [0, 1] (pixel units), got {t.noise}")
        if self.hir_start is not None and not 0 < self.hir_start < 1000:
            raise InputError(f"the HiR warm start must be a timestep in 1..999, got {self.hir_start}")
        if not 0 <= self.overlap < self.window:
            raise InputError(f"overlap must be in [0, window), got {self.overlap} for window {self.window}")
        self._check_prestage(t)

    def _check_prestage(self, t: Tasks) -> None:
        """With a clean-up network or a fast upscaler (engine/cleanup/stage.py: one network before the
        engine, never two) the photo's noise and blur are the network's work; with a clean-up
        network the fidelity sets σ_y; a fast upscaler needs an upscale to do."""
        from engine.cleanup.fidelity import check_fidelity

        object.__setattr__(self, "fidelity", check_fidelity(self.fidelity))
        if self.upscaler:
            if self.cleanup:
                raise InputError("a fast upscaler and a clean-up network are not combined (the fast upscaler "
                                 "removes real-world blur and noise itself): leave out one of them")
            if t.sr < 2:
                raise InputError(f"{self.upscaler} is a fast upscaler: choose an upscale factor (×2, ×4 or ×8)")
            if t.deblur or t.noise > 0:
                raise InputError("the fast upscale removes real-world blur and noise itself: untick Deblur and set "
                                 "the noise level to 0, or upscale with the diffusion engine instead")
        if not self.cleanup:
            if self.warm_start:
                raise InputError("the warm start begins from the cleaned photo: it needs a clean-up model")
            return
        if t.deblur:
            raise InputError("the clean-up model removes blur itself: deblur with a known kernel is not combined "
                             "with it (leave out one or the other)")
        if t.noise > 0:
            raise InputError("with a clean-up model the fidelity sets the noise level of stage 2: leave out the "
                             "noise level")

    def replace(self, **changes: Any) -> "RestoreRequest":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict. In-memory arrays become a fingerprint (shape + sha256)."""

        def enc(value: Any) -> Any:
            if isinstance(value, np.ndarray):
                return {"array": list(value.shape), "dtype": str(value.dtype), "sha256": array_digest(value)}
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
