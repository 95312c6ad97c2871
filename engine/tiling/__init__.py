"""Unlimited-size restoration: window plans (pure geometry), wavefront-batched Mask-Shift
Restoration, Hierarchical Restoration, the compact host canvas, batch sizing and resume state.

``window_plan`` boxes/levels -> ``msr.MsrStage`` solves them level by level on a ``canvas.Canvas``
-> ``hir.run_hir`` chains a downscaled MSR pass and a full-size one pinned to it
(``hir.LowFrequencyPrior``); ``resume.ResumeState`` keeps finished windows on disk.
"""

from engine.tiling.canvas import Canvas
from engine.tiling.hir import HirPlan, LowFrequencyPrior, choose_factor, run_hir
from engine.tiling.memory import plan_batch_size
from engine.tiling.msr import MsrStage, Progress, SamplingSettings, run_msr
from engine.tiling.problem import ObservedProblem, PhotoProblem
from engine.tiling.resume import ResumeState, request_fingerprint
from engine.tiling.window_plan import Box, WindowPlan, effective_overlap, effective_window, plan_windows

__all__ = [
    "Box", "Canvas", "HirPlan", "LowFrequencyPrior", "MsrStage", "ObservedProblem", "PhotoProblem", "Progress",
    "ResumeState", "SamplingSettings", "WindowPlan", "choose_factor", "effective_overlap", "effective_window",
    "plan_batch_size", "plan_windows", "request_fingerprint", "run_hir", "run_msr",
]
