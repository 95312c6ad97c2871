"""The figures of docs/damage-detection.md: each scratched photo of the test data beside the
built-in detector's proposal at its default sensitivity (the mask in red over the photo).

    python bench/damage_figures.py [PHOTO_FOLDER] [OUT_FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.detection import DEFAULT_SENSITIVITY, detect_damage  # noqa: E402
from engine.evaluation.damage import load_photo  # noqa: E402

GAP = 8  # white pixels between the photo and the proposal
#: Also shown at another sensitivity: (photo stem, sensitivity).
MORE = (("old_w_scratch__d", 0.9),)


def figure(photo: np.ndarray, mask: np.ndarray) -> Image.Image:
    shown = photo.copy()
    shown[mask] = 0.35 * shown[mask] + 0.65 * np.float32([1.0, 0.1, 0.1])
    h, w = photo.shape[:2]
    canvas = np.ones((h, 2 * w + GAP, 3), np.float32)
    canvas[:, :w], canvas[:, w + GAP:] = photo, shown
    return Image.fromarray(np.round(canvas * 255).astype(np.uint8))


def main() -> None:
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "old_photos"
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else root
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob("old_w_scratch__*")):
        photo = load_photo(path)
        scores = detect_damage(photo)
        for sensitivity, suffix in [(DEFAULT_SENSITIVITY, "")] + [(s, f"_{round(100 * s)}") for stem, s in MORE
                                                                    if stem == path.stem]:
            mask = scores.mask(sensitivity)
            target = out / f"detect_{path.stem}{suffix}.jpg"
            figure(photo, mask).save(target, quality=88)
            print(f"{target}: {mask.mean():.1%} marked at {sensitivity:g}, {target.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
