"""Two stages for damage nobody can name (DiffBIR's design, with our zero-shot engine as stage 2).

Stage 1, a restoration network read through spandrel (:mod:`engine.cleanup.networks`), removes
the unknown degradation of a real photo: grain, a soft lens, JPEG blocks. It runs over blended
tiles, so photos of any size fit (:mod:`engine.cleanup.stage`). Stage 2 is the usual DDNM / MSR
engine with the cleaned photo x1 as a soft observation, y = avgpool_k(x1) with DDNM+ noise σ_y;
one fidelity control sets k and σ_y (:mod:`engine.cleanup.fidelity`). The same pre-stage runs the
fast upscaler (engine.resshift), at fidelity 1 (:mod:`engine.cleanup.roles`).

This package imports nothing heavy on import (the request validates the fidelity with it).
"""
