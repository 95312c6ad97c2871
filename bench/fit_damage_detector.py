"""Fit the weights of the built-in damage detector's component scores (engine/detection/thin_damage.py).

    python bench/fit_damage_detector.py [DATA_FOLDER]

Synthetic damage (engine.detection.synthetic, seed 1000 + i) is drawn on the old photos of the test
data (../shared/data/old_photos, without the photos that are scratched already), every candidate
component of the detector is described by its features and labelled damage when most of its
pixels are, and a logistic regression (weighted by the components' areas, a little L2) is fitted.
It prints the weights to paste into thin_damage.py. The Kodak photos, on which the quality table
is measured, are never used here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.detection.synthetic import add_damage  # noqa: E402
from engine.detection.thin_damage import LINE_FEATURES, SPECK_FEATURES, thin_damage_scores  # noqa: E402
from engine.evaluation.damage import load_photo  # noqa: E402
from engine.training.data import find_images  # noqa: E402


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = 1e-2, steps: int = 4000):
    """Weights and bias on the original feature scale (fitted on standardised features)."""
    mean, std = x.mean(0), x.std(0) + 1e-9
    z = np.c_[(x - mean) / std, np.ones(len(x))]
    beta = np.zeros(z.shape[1])
    weight = weight / weight.mean()
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ beta))
        beta -= 0.5 * (z.T @ ((p - y) * weight) / len(y) + l2 * np.r_[beta[:-1], 0])
    w = beta[:-1] / std
    return w, beta[-1] - mean @ w


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/old_photos")
    photos = [p for p in find_images(folder, "photo folder") if "scratch" not in p.name]
    rows: dict[str, list] = {"line": [], "speck": []}
    for i, path in enumerate(photos):
        damaged = add_damage(load_photo(path), 1000 + i)
        truth = cv2.dilate(damaged.mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        _, found = thin_damage_scores(damaged.image, min(truth.shape), truth=truth)
        for kind in rows:
            rows[kind] += found[kind]
    for kind, names in (("line", LINE_FEATURES), ("speck", SPECK_FEATURES)):
        x = np.concatenate([r[0] for r in rows[kind]])
        hit = np.concatenate([r[1] for r in rows[kind]])
        area = np.concatenate([r[2] for r in rows[kind]])
        y = (hit > 0.5).astype(float)
        w, b = fit_logistic(x, y, area)
        p = 1 / (1 + np.exp(-(x @ w + b)))
        chosen = p >= 0.4
        precision = area[chosen & (y > 0)].sum() / max(area[chosen].sum(), 1)
        recall = area[chosen & (y > 0)].sum() / max(area[y > 0].sum(), 1)
        print(f"# {kind}: {len(y)} components from {len(photos)} photos; at 0.4 (fit data) "
              f"precision {precision:.2f}, recall {recall:.2f} of the candidates' area")
        print(f"{kind.upper()}_WEIGHTS = ({', '.join(f'{v:.3g}' for v in w)})  # {', '.join(names)}")
        print(f"{kind.upper()}_BIAS = {b:.3g}")


if __name__ == "__main__":
    main()
