"""DDPM ε-prediction training and fine-tuning with EMA, mixed precision and exact resume.

Loss: uniform t ∈ [0, 999], x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε with the linear β schedule 1e-4..0.02,
MSE between ε and the network's first three output channels. Learned-sigma ADM networks have six
output channels; only the ε half is trained (their variance half keeps its initial weights and
is unused by DDNM, which sets its own noise levels).

:func:`train` is a generator of events (no printing); the CLI renders them.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.device import pick_device
from engine.errors import InputError
from engine.events import LogEvent
from engine.training import checkpoint_io
from engine.training.checkpoint_io import build_network
from engine.training.data import ImageFolder

NUM_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved in the train state and the model sidecar)."""

    data: str
    out: str
    arch: str = "adm-small"
    size: int = 256
    init: Optional[str] = None
    steps: int = 10000
    batch: int = 8
    lr: float = 1e-4
    warmup: int = 100  # linear LR warm-up steps (independent of --steps, so resuming longer is exact)
    grad_clip: float = 1.0
    device: str = "auto"
    precision: str = "fp32"
    ema: float = 0.9999
    sample_every: int = 1000
    sample_steps: int = 25
    sample_count: int = 8
    checkpoint_every: int = 1000
    resume: bool = False
    seed: int = 0
    skip_bad_files: bool = False


@dataclass(frozen=True)
class TrainProgress:
    step: int
    total: int
    loss: float
    elapsed: float
    eta: Optional[float]


@dataclass(frozen=True)
class SampleGridSaved:
    step: int
    path: str


@dataclass(frozen=True)
class TrainFinished:
    model_path: str
    meta: dict


@dataclass(frozen=True)
class TrainCancelled:
    """The run stopped between two steps; ``saved`` is the training state kept for a resume (None
    when no step of this run had finished)."""
    step: int
    saved: Optional[str]


TrainEvent = Union[TrainProgress, SampleGridSaved, TrainFinished, TrainCancelled, LogEvent]


def linear_alphas_cumprod() -> torch.Tensor:
    """ᾱ_t for t = 0..999, (1000,) float64."""
    betas = torch.linspace(BETA_START, BETA_END, NUM_TIMESTEPS, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def epsilon_loss(model: torch.nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """MSE(ε, ε_θ(x_t, t)) on the first three output channels.

    x0, noise: (B, 3, H, W) in [-1, 1] / N(0, 1); t: (B,) int64 in [0, 999];
    alphas_cumprod: (1000,) on x0's device. Returns a scalar float32 tensor.
    """
    a = alphas_cumprod[t].to(x0.dtype).view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    pred = model(x_t, t)[:, :3]
    return F.mse_loss(pred.float(), noise.float())


@torch.no_grad()
def ddim_sample(model: torch.nn.Module, noise: torch.Tensor, steps: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Plain deterministic DDIM (η = 0) from x_T = ``noise`` (B, 3, H, W). Returns [-1, 1] images."""
    ts = torch.linspace(NUM_TIMESTEPS - 1, 0, max(1, steps)).round().long().tolist()
    ts = sorted(set(ts), reverse=True)
    x = noise
    for i, t in enumerate(ts):
        a_t = alphas_cumprod[t].float()
        a_next = alphas_cumprod[ts[i + 1]].float() if i + 1 < len(ts) else torch.tensor(1.0, device=x.device)
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))[:, :3].float()
        x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
        x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    return x.clamp(-1, 1)


def save_grid(images: torch.Tensor, path: Path) -> None:
    """(B, 3, H, W) [-1, 1] -> one PNG, ⌈√B⌉ columns."""
    b, _, h, w = images.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    pix = ((images.float().cpu().clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).numpy()
    for i in range(b):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = pix[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


class Trainer:
    """One training run: model, EMA copy, optimizer, generators. Use :meth:`step` or :func:`train`."""

    def __init__(self, config: TrainConfig, data: Optional[ImageFolder] = None):
        self.config = config
        self.device = pick_device(config.device)
        if config.precision not in ("fp32", "bf16", "fp16"):
            raise InputError(f"precision must be fp32, bf16 or fp16, got {config.precision!r}")
        if config.batch < 1 or config.steps < 0 or config.lr <= 0 or not 0.0 <= config.ema < 1.0:
            raise InputError("batch must be ≥ 1, steps ≥ 0, lr > 0 and ema in [0, 1)")
        self.data = data if data is not None else ImageFolder(config.data, config.size, skip_bad=config.skip_bad_files)
        self.notes: list[str] = []
        torch.manual_seed(config.seed)
        self.model, self.arch_info = build_network(config.arch, config.size, init=config.init)
        self.model.to(self.device).train()
        self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=0.0)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        if self.autocast_dtype is not None and self.device.type == "cpu":
            self.notes.append(f"{config.precision} mixed precision is for GPUs; training in fp32 on the CPU")
            self.autocast_dtype = None
        use_scaler = self.autocast_dtype is torch.float16
        if hasattr(torch.amp, "GradScaler"):  # torch ≥ 2.3
            self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        else:
            self.scaler = torch.cuda.amp.GradScaler(enabled=use_scaler)
        self.alphas_cumprod = linear_alphas_cumprod().to(self.device)
        self.data_gen = torch.Generator().manual_seed(config.seed)
        self.noise_gen = torch.Generator().manual_seed(config.seed + 1)
        self.step_count = 0
        self._pin = torch.cuda.is_available() and self.device.type != "cpu"

    # -- one optimisation step ------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def ema_decay(self) -> float:
        """The configured decay, warmed up as (1+n)/(10+n) so short runs are not stuck at init."""
        n = self.step_count
        return min(self.config.ema, (1 + n) / (10 + n))

    def step(self) -> float:
        """Draw a batch, take one optimizer step, update the EMA. Returns the batch loss."""
        x0 = self.data.sample_batch(self.config.batch, self.data_gen)
        t = torch.randint(NUM_TIMESTEPS, (x0.shape[0],), generator=self.noise_gen)
        noise = torch.randn(x0.shape, generator=self.noise_gen)
        if self._pin:  # page-locked host memory lets the copy overlap with the GPU's queued work
            x0, t, noise = x0.pin_memory(), t.pin_memory(), noise.pin_memory()
        x0, t, noise = (v.to(self.device, non_blocking=self._pin) for v in (x0, t, noise))
        lr_scale = min(1.0, (self.step_count + 1) / max(1, self.config.warmup))
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * lr_scale
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = epsilon_loss(self.model, x0, t, noise, self.alphas_cumprod)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_count += 1
        self._update_ema()
        value = float(loss.detach())  # the one host sync per step
        if not math.isfinite(value) and not self.scaler.is_enabled():
            raise InputError(f"training diverged at step {self.step_count} (loss {value}); lower --lr or use bf16/fp32")
        return value

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.ema_decay()
        ema_params = list(self.ema_model.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in self.model.parameters()], 1.0 - decay)
        for ema_b, b in zip(self.ema_model.buffers(), self.model.buffers()):
            ema_b.copy_(b)

    @torch.no_grad()
    def fixed_batch_loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, use_ema: bool = False) -> float:
        """The loss of the current (or EMA) weights on a given batch; for monitoring and tests."""
        model = self.ema_model if use_ema else self.model
        was_training = model.training
        model.eval()
        loss = epsilon_loss(model, x0.to(self.device), t.to(self.device), noise.to(self.device), self.alphas_cumprod)
        model.train(was_training)
        return float(loss)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume exactly. All randomness is drawn from the CPU generators
        saved here (the networks use no dropout), so no per-device RNG state is needed."""
        return {
            "format": 1,
            "step": self.step_count,
            "config": asdict(self.config),
            "arch_info": self.arch_info,
            "model": self.model.state_dict(),
            "ema": self.ema_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data_gen": self.data_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        saved = state["config"]
        for key in ("arch", "size"):
            if saved.get(key) != getattr(self.config, key):
                raise InputError(f"cannot resume: the saved run used {key}={saved.get(key)!r}, this one {getattr(self.config, key)!r}")
        self.model.load_state_dict(state["model"])
        self.ema_model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.data_gen.set_state(state["data_gen"])
        self.noise_gen.set_state(state["noise_gen"])
        torch.set_rng_state(state["torch_rng"])
        self.step_count = int(state["step"])

    def save_checkpoint(self) -> Path:
        return checkpoint_io.save_train_state(self.config.out, self.state_dict())

    def metadata(self) -> dict:
        """JSON sidecar content for the output model."""
        return {
            "kind": "restorer-trained-model",
            "arch": self.config.arch,
            "image_size": self.config.size,
            "family": self.arch_info.get("family"),
            "learned_sigma": self.arch_info.get("learned_sigma"),
            "schedule": {"type": "linear", "beta_start": BETA_START, "beta_end": BETA_END, "timesteps": NUM_TIMESTEPS},
            "objective": "epsilon-mse",
            "weights": "ema",
            "ema_decay": self.config.ema,
            "steps": self.step_count,
            "batch": self.config.batch,
            "lr": self.config.lr,
            "precision": self.config.precision,
            "init": self.config.init,
            "data": self.data.describe(),
            "seed": self.config.seed,
        }

    def write_model(self) -> Path:
        checkpoint_io.write_model(self.config.out, self.ema_model.state_dict(), self.metadata())
        return Path(self.config.out)

    def save_samples(self) -> Path:
        gen = torch.Generator().manual_seed(self.config.seed + 2)  # same noise every time: grids are comparable
        noise = torch.randn((self.config.sample_count, 3, self.config.size, self.config.size), generator=gen)
        with self._autocast():
            images = ddim_sample(self.ema_model, noise.to(self.device), self.config.sample_steps, self.alphas_cumprod)
        path = checkpoint_io.train_state_dir(self.config.out) / "samples" / f"step_{self.step_count:07d}.png"
        save_grid(images, path)
        return path


def train(config: TrainConfig, trainer: Optional[Trainer] = None,
          cancel: Optional[threading.Event] = None) -> Iterator[TrainEvent]:
    """Run (or resume) training to ``config.steps``; yields progress, grids and a final event.
    Setting ``cancel`` stops it after the current step, saving the training state for a resume."""
    trainer = trainer or Trainer(config)
    for note in trainer.notes:
        yield LogEvent("warning", note)
    if config.resume:
        state = checkpoint_io.load_train_state(config.out)
        if state is None:
            yield LogEvent("warning", f"no saved training state for {config.out}; starting from the beginning")
        else:
            trainer.load_state_dict(state)
            yield LogEvent("info", f"resumed at step {trainer.step_count}")
    elif checkpoint_io.load_train_state(config.out) is not None:
        yield LogEvent("warning", f"overwriting the earlier training state of {config.out} (use --resume to continue it)")
    yield LogEvent("info", f"training {config.arch} at {config.size}px on {len(trainer.data)} images, device {trainer.device}")
    start, first = time.perf_counter(), trainer.step_count
    while trainer.step_count < config.steps:
        if cancel is not None and cancel.is_set():
            saved = str(trainer.save_checkpoint()) if trainer.step_count > first else None
            trainer.data.close()
            yield TrainCancelled(trainer.step_count, saved)
            return
        loss = trainer.step()
        n = trainer.step_count
        elapsed = time.perf_counter() - start
        done = n - first
        eta = elapsed / done * (config.steps - n) if done else None
        yield TrainProgress(n, config.steps, loss, elapsed, eta)
        if config.sample_every > 0 and n % config.sample_every == 0:
            yield SampleGridSaved(n, str(trainer.save_samples()))
        if config.checkpoint_every > 0 and n % config.checkpoint_every == 0 and n < config.steps:
            trainer.save_checkpoint()
    trainer.save_checkpoint()
    path = trainer.write_model()
    trainer.data.close()
    yield TrainFinished(str(path), trainer.metadata())
