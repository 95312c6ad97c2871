"""Damage detection: a proposed mask of scratches, cracks, dust, tears and missing corners.

One interface, two detectors:

- ``"builtin"`` (:mod:`engine.detection.builtin`): image processing, needs no model file;
- a model id or checkpoint path of the scratch-detection network of Bringing Old Photos Back to
  Life (:mod:`engine.detection.network`), run on gray input as it expects.

:func:`detect` is the expensive part: it yields events (tiles, progress) and returns
:class:`DamageScores`, one byte per pixel saying how sure the detector is. :func:`mask_from_scores`
is the cheap part: a threshold, so a sensitivity control can update the proposal live.
"""

from engine.detection.detect import (
    BUILTIN,
    DEFAULT_DETECTOR,
    DEFAULT_SENSITIVITY,
    DamageScores,
    detect,
    detect_damage,
    mask_from_scores,
)

__all__ = ["BUILTIN", "DEFAULT_DETECTOR", "DEFAULT_SENSITIVITY", "DamageScores", "detect", "detect_damage",
           "mask_from_scores"]
