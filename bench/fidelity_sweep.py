"""What the fidelity control does (docs/two-stage.md): one photo restored in two stages at several
fidelity values; for each, how far the result moved from the cleaned photo x1 (RMS, [0, 1] units,
at x1's scale) and how well it agrees with the soft observation y = avgpool_k(x1).

    PYTHONPATH=. python bench/fidelity_sweep.py ../shared/data/kodak/01.png --model test-tiny --steps 20

``--cleanup identity`` (the default) is a Real-ESRGAN Compact network whose convolutions are zero,
so x1 is the photo itself: the sweep then shows stage 2 alone. Any clean-up model id or file works
too. ``--degrade`` first damages the photo as ``evaluate --task real`` does (at scale 1), so x1 is
the damaged photo; ``--model oracle`` is a prior that knows the undamaged photo (the PSNR column
then says how close each fidelity gets to it); ``--k-only`` keeps σ_y at 0 (an exact oracle turns
any σ_y > 0 into the truth at the last step, whatever k is). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def identity_network(folder: Path) -> Path:
    """A spandrel Compact ×1 whose body is zero: it adds nothing to its input."""
    import torch
    from spandrel.architectures.Compact import Compact

    net = Compact(num_feat=8, num_conv=2, upscale=1)
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    path = folder / "identity_compact.pth"
    torch.save(net.state_dict(), path)
    return path


def main(argv: list[str] | None = None) -> int:
    from engine.cleanup.fidelity import soft_observation
    from engine.image_io import load_image
    from engine.pipeline import run_to_completion
    from engine.request import RestoreRequest

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("photo")
    p.add_argument("--cleanup", default="identity")
    p.add_argument("--model", default="test-tiny")
    p.add_argument("--size", type=int, default=256, help="centre square crop (0 = whole photo)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--fidelity", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
    p.add_argument("--warm-start", action="store_true")
    p.add_argument("--degrade", action="store_true", help="damage the photo first (blur, noise, JPEG; seed 0)")
    p.add_argument("--k-only", action="store_true", help="σ_y = 0: only the pooling block changes with F")
    args = p.parse_args(argv)
    rgb = load_image(args.photo).rgb
    if args.size:
        h, w = rgb.shape[:2]
        top, left = (h - args.size) // 2, (w - args.size) // 2
        rgb = np.ascontiguousarray(rgb[top : top + args.size, left : left + args.size])
    clean, photo = rgb, rgb
    if args.degrade:
        from engine.evaluation.real import degrade_real

        photo = degrade_real(clean, 1, seed=0)[0]
    if args.k_only:
        from engine.cleanup import fidelity, stage

        stage.soft_observation = lambda f, warm=False: fidelity.SoftObservation(
            f, soft_observation(f).k, 0.0, soft_observation(f, warm).start_t)
    oracle = args.model == "oracle"
    with tempfile.TemporaryDirectory() as folder:
        cleanup = str(identity_network(Path(folder))) if args.cleanup == "identity" else args.cleanup
        print(f"photo {Path(args.photo).name} {rgb.shape[1]}×{rgb.shape[0]}{' damaged' if args.degrade else ''}, "
              f"stage 1 {args.cleanup}, stage 2 {args.model}, {args.steps} steps"
              f"{', warm start' if args.warm_start else ''}{', σ_y = 0' if args.k_only else ''}", file=sys.stderr)
        print("| F | k | σ_y | RMS change from x1 | consistency ‖Ax−y‖/‖y‖ | PSNR to the undamaged photo |")
        print("|---|---|---|---|---|---|")
        for f in args.fidelity:
            request = RestoreRequest(image=photo, cleanup=cleanup, fidelity=f, warm_start=args.warm_start,
                                     model="test-tiny" if oracle else args.model, steps=args.steps, device=args.device,
                                     tiling="none" if oracle else "auto")
            denoiser = None
            if oracle:
                from engine.evaluation.evaluate import to_tensor
                from engine.samplers import OracleDenoiser

                denoiser = OracleDenoiser(to_tensor(clean, torch_device(args.device)))
            finished = run_to_completion(request, denoiser=denoiser)
            report = finished.report
            from engine.cleanup.stage import soft_observation as current

            soft = current(f, args.warm_start)
            from engine.evaluation.metrics import psnr

            print(f"| {f:.2f} | {soft.k} | {soft.sigma_y:g} | {report['change_from_stage1']:.4f} | "
                  f"{report['consistency']:.2e} | {psnr(np.clip(finished.result, 0, 1), clean):.2f} |", flush=True)
    return 0


def torch_device(spec: str):
    from engine.device import pick_device

    return pick_device(spec)


if __name__ == "__main__":
    sys.exit(main())
