"""``python -m engine detect PHOTO -o MASK [--detector builtin|ID|PATH] [--sensitivity S]``.

Finds scratches, cracks, dust, tears and missing corners and writes the proposed mask (white =
fill, an 8-bit PNG or TIFF the app and ``restore --mask`` read). PHOTO may be a folder: OUTPUT is
then a folder of masks named like the photos (``x.jpg`` -> ``x.png``), which ``restore --mask``
takes in folder mode. Exit codes: 0 done, 1 some photos of a folder failed, 2 unusable input,
130 cancelled (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engine.cli.common import (check_writable_file, check_writable_folder, fraction, refuse_overwriting,
                               refuse_same_destination, writing)
from engine.cli.console import EventRenderer, StopRequest, cancel_on_ctrl_c, exit_code_of, stopped_by
from engine.errors import Cancelled, EngineError, InputError

MASK_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}


def register(subparsers: Any) -> None:
    from engine.detection import DEFAULT_DETECTOR, DEFAULT_SENSITIVITY

    p = subparsers.add_parser(
        "detect", help="find scratches, dust, tears and missing corners: write a mask to fill",
        description="Propose a mask of the damage in a photo (white = fill): thin light or dark scratches and "
        "cracks, dust specks, torn or missing corners. Check it (and correct it in the app) before filling.")
    p.add_argument("input", metavar="PHOTO", help="a photo, or a folder of photos")
    p.add_argument("-o", "--output", required=True, metavar="MASK",
                   help="the mask to write (.png or .tif); a folder in folder mode")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="builtin|ID|PATH",
                   help="builtin (image processing, no model file), or the scratch-detection network of "
                   "Bringing Old Photos Back to Life: its model id (bopb-scratch-detector) or file")
    p.add_argument("--sensitivity", type=fraction, default=DEFAULT_SENSITIVITY, metavar="S",
                   help="0..1: higher marks more (weaker or less certain damage too)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|cuda:N", help="where the network runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def save_mask(mask: np.ndarray, path: Path) -> None:
    """(H, W) bool -> an 8-bit gray file, white = fill, written atomically."""
    from PIL import Image

    from engine.atomic_file import atomic_write

    with writing(path), atomic_write(path) as handle:
        Image.fromarray(np.where(mask, np.uint8(255), np.uint8(0))).save(handle, MASK_FORMATS[path.suffix.lower()])


def detect_file(args: argparse.Namespace, source: Path, target: Path, renderer: EventRenderer,
                cancel: threading.Event) -> float:
    """Write the mask of ``source`` to ``target``; returns the share of the photo marked."""
    from engine.detection import detect
    from engine.image_io import load_image

    photo = load_image(source).rgb
    events = detect(photo, args.detector, cancel=cancel, device=args.device)
    try:
        while True:
            renderer.handle(next(events))
    except StopIteration as stop:
        scores = stop.value
    finally:
        renderer.close()
    del photo
    mask = scores.mask(args.sensitivity)
    save_mask(mask, target)
    share = float(mask.mean())
    renderer.say(f"{source.name}: {share:.2%} of the photo marked as damage ({scores.summary}, sensitivity "
                 f"{args.sensitivity:g}); mask written to {target}")
    return share


def _check_detector(spec: str) -> None:
    """A model that cannot be used is refused before any photo is read (and loads once here)."""
    from engine.detection import BUILTIN
    from engine.detection.detect import load_network

    if spec != BUILTIN:
        load_network(spec)


def run(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    if not source.exists():
        raise InputError(f"input not found: {source}")
    renderer = EventRenderer(show_progress=not args.no_progress, what=("detecting", "tile"))
    cancel = StopRequest()
    try:
        with cancel_on_ctrl_c(cancel, renderer.say):
            if source.is_dir():
                return _run_folder(args, source, target, renderer, cancel)
            if target.suffix.lower() not in MASK_FORMATS:
                raise InputError(f"cannot write the mask {target}: use .png or .tif (a mask must not be lossy)")
            refuse_overwriting({"the photo": source}, {"the mask": target})
            check_writable_file(target, "the mask")
            _check_detector(args.detector)
            detect_file(args, source, target, renderer, cancel)
    except (Cancelled, KeyboardInterrupt) as stop:
        renderer.close()
        code = exit_code_of(stop, cancel)
        kept = "the masks written before are kept" if source.is_dir() else "no mask was written"
        renderer.say(f"{stopped_by(code)}: {kept}")
        return code
    return 0


def _run_folder(args: argparse.Namespace, folder: Path, out_dir: Path, renderer: EventRenderer,
                cancel: threading.Event) -> int:
    from engine.image_io import IMAGE_EXTENSIONS

    check_writable_folder(out_dir, "the mask folder")
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not photos:
        raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    targets = {p: out_dir / (p.stem + ".png") for p in photos}
    refuse_overwriting({f"the photo {p.name}": p for p in photos},
                       {f"the mask of {p.name}": t for p, t in targets.items()})
    seen: dict[Path, Path] = {}
    for photo, target in targets.items():
        refuse_same_destination({f"the mask of {seen[target].name}": target} if target in seen else {},
                                {f"the mask of {photo.name}": target})
        seen[target] = photo
    _check_detector(args.detector)
    failed = 0
    for number, photo in enumerate(photos, 1):
        renderer.say(f"[{number}/{len(photos)}] {photo.name}")
        try:
            detect_file(args, photo, targets[photo], renderer, cancel)
        except EngineError as exc:
            renderer.say(f"error: {photo.name}: {exc}")
            failed += 1
    renderer.say(f"done: {len(photos) - failed} mask(s) written to {out_dir}, {failed} failed")
    return 1 if failed else 0
