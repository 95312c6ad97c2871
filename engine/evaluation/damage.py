"""How well the damage detectors find damage: precision, recall and IoU against known truth.

Each clean photo gets seeded synthetic damage (:func:`engine.detection.synthetic.add_damage`,
seed = ``seed + i`` for photo i), each detector proposes a mask at ``sensitivity``, and the pixels
are counted against the drawn damage: over all photos together (so large photos weigh more),
per kind of damage (the share of its pixels found), and on the undamaged originals (the share of
pixels marked, all of them false positives).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from engine.detection import DEFAULT_SENSITIVITY, detect_damage
from engine.detection.synthetic import add_damage

KINDS = ("scratches", "cracks", "specks", "tear")


@dataclass
class DetectionResult:
    image: str
    detector: str
    true_positive: int
    false_positive: int
    false_negative: int
    clean_marked: float  # share of the undamaged original's pixels marked
    found: dict = field(default_factory=dict)  # kind -> (pixels found, pixels of that kind)
    seconds: float = 0.0


@dataclass(frozen=True)
class Summary:
    detector: str
    images: int
    precision: float
    recall: float
    iou: float
    clean_marked_mean: float
    clean_marked_max: float
    recall_by_kind: dict
    seconds_per_photo: float


def load_photo(path: Path) -> np.ndarray:
    from engine.image_io import load_image

    return load_image(path).rgb


def evaluate_detection(photos: Sequence[Path], detectors: Sequence[str], *, sensitivity: float = DEFAULT_SENSITIVITY,
                       seed: int = 0, device: str = "auto") -> Iterator[DetectionResult]:
    """One result per photo and detector (photo-major order)."""
    for i, path in enumerate(photos):
        clean = load_photo(path)
        damaged = add_damage(clean, seed + i)
        for detector in detectors:
            started = time.perf_counter()
            mask = detect_damage(damaged.image, detector, device=device).mask(sensitivity)
            seconds = time.perf_counter() - started
            clean_mask = detect_damage(clean, detector, device=device).mask(sensitivity)
            truth = damaged.mask
            yield DetectionResult(
                image=path.name, detector=detector,
                true_positive=int((mask & truth).sum()), false_positive=int((mask & ~truth).sum()),
                false_negative=int((~mask & truth).sum()), clean_marked=float(clean_mask.mean()),
                found={kind: (int((mask & damaged.kinds[kind]).sum()), int(damaged.kinds[kind].sum())) for kind in KINDS},
                seconds=seconds)


def summarize(results: Sequence[DetectionResult]) -> list[Summary]:
    """Per detector, pixels pooled over the photos."""
    out = []
    for detector in dict.fromkeys(r.detector for r in results):
        rs = [r for r in results if r.detector == detector]
        tp, fp, fn = (sum(getattr(r, name) for r in rs) for name in ("true_positive", "false_positive", "false_negative"))
        by_kind = {}
        for kind in KINDS:
            found, total = sum(r.found[kind][0] for r in rs), sum(r.found[kind][1] for r in rs)
            by_kind[kind] = found / total if total else None
        clean = [r.clean_marked for r in rs]
        out.append(Summary(detector, len(rs), tp / max(tp + fp, 1), tp / max(tp + fn, 1), tp / max(tp + fp + fn, 1),
                           float(np.mean(clean)), float(np.max(clean)), by_kind,
                           float(np.mean([r.seconds for r in rs]))))
    return out


def format_summary(summaries: Sequence[Summary], sensitivity: float, note: Optional[str] = None) -> str:
    """A Markdown table of the summaries."""
    head = ("| detector | photos | precision | recall | IoU | " + " | ".join(f"recall: {k}" for k in KINDS)
            + " | marked on clean photos (mean / max) | s per photo |")
    lines = [f"Sensitivity {sensitivity:g}." + (f" {note}" if note else ""), "", head,
             "|" + "---|" * (6 + len(KINDS) + 1)]
    for s in summaries:
        kinds = " | ".join("–" if s.recall_by_kind[k] is None else f"{s.recall_by_kind[k]:.2f}" for k in KINDS)
        clean = f"{100 * s.clean_marked_mean:.2f} % / {100 * s.clean_marked_max:.2f} %"
        lines.append(f"| {s.detector} | {s.images} | {s.precision:.2f} | {s.recall:.2f} | {s.iou:.2f} | {kinds} | "
                     f"{clean} | {s.seconds_per_photo:.2f} |")
    return "\n".join(lines)
