"""What a two-stage run (Clean up unknown damage, engine/cleanup) will be, for the panel's time
estimate: stage 1's network over the photo, then stage 2 as the fidelity makes it. Pure Python (no
Qt, no torch), like gui.run.plan."""

from __future__ import annotations

import dataclasses

from engine.cleanup.fidelity import soft_observation

#: Stage 1's work per input megapixel, in ADM-256 window calls (fp32), from timing the networks at
#: full size with random weights on the 2-core build machine: SCUNet 292 s/MP and RRDB ×4 (BSRNet,
#: Real-ESRGAN) 1428 s/MP there, where fp32 ADM calls take several times the 10 s the estimate
#: assumes; the ratio between the two kinds is kept. Rough, like every estimate here.
CALLS_PER_MEGAPIXEL = {1: 3.0}
UPSCALER_CALLS_PER_MEGAPIXEL = 15.0


def stage1_seconds(settings, image_size: tuple[int, int], device_kind: str) -> float:
    """Seconds of stage 1 on a photo of ``image_size`` (0 when the run has one stage)."""
    from gui.run.plan import seconds_per_call

    if not settings.cleanup:
        return 0.0
    megapixels = image_size[0] * image_size[1] / 1e6
    calls = CALLS_PER_MEGAPIXEL.get(int(settings.cleanup_scale), UPSCALER_CALLS_PER_MEGAPIXEL) * megapixels
    return calls * seconds_per_call(device_kind, "adm", 256, "fp32")


def stage2_settings(settings):
    """The settings stage 2 runs with: the soft observation's σ_y in place of Remove noise, no
    deblur, HiR off, fewer steps for the fast start. A one-stage run's settings are returned as
    they are."""
    if not settings.cleanup:
        return settings
    soft = soft_observation(settings.fidelity, settings.warm_start)
    return dataclasses.replace(settings, cleanup=False, denoise=False, deblur=False, hir="off",
                               sigma_y=soft.sigma_y, steps=soft.steps(settings.steps))


def stage2_runs(settings) -> bool:
    """Whether stage 2 runs at all: not at fidelity 1 with nothing else to do (engine/cleanup/stage.py)."""
    if not settings.cleanup:
        return settings.any_task()
    soft = soft_observation(settings.fidelity)
    return soft.k > 1 or soft.sigma_y > 0 or settings.inpaint or settings.colorize or settings.upscale > 1
