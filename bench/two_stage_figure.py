"""The figure of docs/two-stage.md: a real two-stage run of the engine on an old photo, drawn from
its events: stage 1's tiles arriving, the cleaned photo with stage 2's windows arriving, and the
result. Both networks have RANDOM weights (a Real-ESRGAN Compact as stage 1, test-tiny as stage 2):
the figure shows the flow, not a restoration.

    PYTHONPATH=. python bench/two_stage_figure.py ../shared/data/old_photos/1888Slum.jpg docs/two-stage-flow.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PANEL_WIDTH = 300


def random_cleanup(folder: Path) -> Path:
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    net = Compact(num_feat=8, num_conv=2, upscale=1)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.02)
    path = folder / "random_compact.pth"
    torch.save(net.state_dict(), path)
    return path


def panel(pixels: np.ndarray, boxes=(), done=(), title: str = "") -> Image.Image:
    """A downscaled image with the boxes of a plan (done ones filled lightly) and a title."""
    h, w = pixels.shape[:2]
    scale = PANEL_WIDTH / w
    image = Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    image = image.resize((PANEL_WIDTH, round(h * scale)), Image.LANCZOS)
    draw = ImageDraw.Draw(image, "RGBA")
    for i, (top, left, bh, bw) in enumerate(boxes):
        rect = [left * scale, top * scale, (left + bw) * scale - 1, (top + bh) * scale - 1]
        draw.rectangle(rect, outline=(255, 200, 0, 255) if i in done else (80, 160, 255, 200), width=1)
    canvas = Image.new("RGB", (PANEL_WIDTH, image.height + 18), "white")
    canvas.paste(image, (0, 18))
    ImageDraw.Draw(canvas).text((3, 3), title, fill=(0, 0, 0))
    return canvas


def main(photo: str, out: str) -> int:
    from engine.events import FinishedEvent, PlanEvent, WindowFinished
    from engine.image_io import load_image
    from engine.pipeline import restore
    from engine.request import RestoreRequest

    rgb = load_image(photo).rgb
    panels, plans, done, canvas = [], {}, {}, {}
    with tempfile.TemporaryDirectory() as folder:
        request = RestoreRequest(image=rgb, cleanup=str(random_cleanup(Path(folder))), fidelity=0.75,
                                 model="test-tiny", steps=2, window=128, overlap=64, device="cpu")
        for event in restore(request):
            if isinstance(event, PlanEvent):
                plans[event.stage] = event
                done[event.stage] = set()
                canvas[event.stage] = np.full((*event.output_size, 3), 0.9, np.float32)
                if event.stage == "restore":  # stage 1 is finished: its result is the background
                    h, w = rgb.shape[:2]
                    canvas["restore"][:h, :w] = canvas["cleanup"][:h, :w]
            elif isinstance(event, WindowFinished):
                rows, cols = event.box.slices()
                canvas[event.stage][rows, cols] = event.pixels
                done[event.stage].add(event.index)
                plan = plans[event.stage]
                if len(done[event.stage]) == (1 if event.stage == "cleanup" else len(plan.boxes) // 2):
                    title = ("stage 1: a clean-up tile arrives" if event.stage == "cleanup"
                             else "stage 2: windows over the cleaned photo")
                    panels.append(panel(canvas[event.stage][: rgb.shape[0], : rgb.shape[1]], plan.boxes,
                                        done[event.stage], title))
            elif isinstance(event, FinishedEvent):
                panels.append(panel(event.result, title="result, fidelity 0.75 (random weights: noisy detail)"))
    width = sum(p.width for p in panels) + 8 * (len(panels) - 1)
    figure = Image.new("RGB", (width, max(p.height for p in panels)), "white")
    x = 0
    for p in panels:
        figure.paste(p, (x, 0))
        x += p.width + 8
    figure = figure.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    figure.save(out, optimize=True)
    print(f"{out}: {Path(out).stat().st_size // 1024} KB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
