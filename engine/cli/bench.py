"""``python -m engine bench``: UNet throughput and end-to-end MSR time, ours vs a reference-like baseline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.common import check_writable_file, parse_travel, whole, writing
from engine.errors import InputError
from engine.request import PRECISION_CHOICES

#: The ADM-256 network halves the window five times.
WINDOW_MULTIPLE = 32


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,2,4, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be ≥ 1, got {text!r}")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure speed: ours vs a reference-like baseline, side by side",
                              description="UNet throughput and end-to-end MSR time (an SR ×4 job), ours vs a "
                              "reference-like baseline, on random-weight networks: no model file is read.")
    p.add_argument("--config", choices=("official", "tiny"), default="official",
                   help="network: the ADM-256 architecture with random weights, or test-tiny")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="auto: bf16 on GPUs and on CPUs with native bf16, else fp32 (as the app)")
    p.add_argument("--batch", type=whole(1), default=8, help="windows per denoiser call on the fast path")
    p.add_argument("--size", type=whole(4, multiple_of=4), default=1024,
                   help="output side of the SR ×4 job (px, a multiple of 4, at least the window)")
    p.add_argument("--window", type=whole(32, multiple_of=WINDOW_MULTIPLE), default=256,
                   help=f"window side (px, a multiple of {WINDOW_MULTIPLE})")
    p.add_argument("--steps", type=whole(1, 1000), default=100, help="sampling steps of the MSR jobs")
    p.add_argument("--travel", type=parse_travel, default=(10, 3), help="time travel L,R of the second job")
    p.add_argument("--unet-iters", type=whole(1), default=10, help="timed UNet calls per throughput figure")
    p.add_argument("--baseline-windows", type=whole(1), default=None,
                   help="time the baseline on this many windows and extrapolate (all windows cost the same)")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast path (GPU)")
    p.add_argument("--no-cuda-graphs", action="store_true", help="eager calls instead of CUDA graph replay")
    p.add_argument("--channels-last", action="store_true", help="NHWC weights and inputs on the fast path")
    p.add_argument("--latency", type=_batches, default=(), metavar="B,B,...",
                   help="also print ms per call of our path at these batch sizes, e.g. 1,2,4,8,16")
    p.add_argument("--profile", action="store_true",
                   help="also print where one call's time goes (kernels by kind, the top kernels)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    fast = p.add_argument_group("fast upscale")
    fast.add_argument("--upscalers", action="store_true",
                      help="instead: ResShift ×4 (the fast upscale) against the engine's ×4 at the Fast and Balanced "
                           "presets, seconds per output megapixel")
    fast.add_argument("--upscale-input", type=whole(16), default=64, metavar="N",
                      help="side of the photo upscaled ×4 in --upscalers (px)")
    fast.add_argument("--measure-balanced", action="store_true",
                      help="run the Balanced preset too instead of extrapolating it from Fast")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.benchmark import run_benchmark
    from engine.device import pick_device
    from engine.report import write_report

    if args.size < args.window:
        raise InputError(f"--size must be at least the window ({args.window})")
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        check_writable_file(json_path, "--json")
    device = pick_device(args.device)

    def log(line: str) -> None:
        print(line, file=sys.stdout, flush=True)

    if args.upscalers:
        from engine.resshift.bench import compare_upscalers

        results = compare_upscalers(device=device, precision=args.precision, input_size=args.upscale_input,
                                    measure_balanced=args.measure_balanced, log=log)
    else:
        results = run_benchmark(config=args.config, device=device, precision=args.precision, batch=args.batch,
                                output_size=args.size, window=args.window, steps=args.steps, travel=args.travel,
                                unet_iters=args.unet_iters, baseline_windows=args.baseline_windows,
                                skip_baseline=args.skip_baseline, compile=args.compile,
                                channels_last=args.channels_last, cuda_graphs=not args.no_cuda_graphs,
                                latency_batches=args.latency, profile=args.profile, log=log)
    if json_path is not None:
        with writing(json_path, kept="; the figures are printed above"):
            write_report(json_path, results)
    return 0
