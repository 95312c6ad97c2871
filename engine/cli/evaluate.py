"""``python -m engine evaluate``: PSNR / SSIM / consistency of restorations of clean photos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from engine.cli.common import (check_model, check_writable_file, fraction, model_inputs, refuse_overwriting, whole,
                               writing)
from engine.cli.two_stages import cleanup_inputs
from engine.errors import InputError
from engine.evaluation.evaluate import TASKS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="measure restorations (PSNR, SSIM, consistency) on a folder of clean photos",
        description="Each clean photo is centre-cropped and resized to --size, degraded by the task's operator "
        "(plus optional noise), restored through the same pipeline as the app, and compared with the original. "
        "The degraded input's least-squares image A†y and, for SR, bicubic upscaling are the baselines.",
    )
    p.add_argument("--data", required=True, help="folder of clean photos (files with 'mask' in the name are skipped)")
    p.add_argument("--task", nargs="+", choices=TASKS + ("real",), metavar="TASK",
                   help=f"one or more of: {', '.join(TASKS)} (or --detector); or real: realistic damage (blur, "
                   "downscale, noise, JPEG; seeded) restored in two stages (needs --cleanup; engine/evaluation/real.py)")
    p.add_argument("--detector", action="append", metavar="builtin|ID|PATH",
                   help="measure damage detection instead (repeatable): precision, recall and IoU on seeded synthetic "
                   "damage, and what is marked on the clean photos (engine/evaluation/damage.py)")
    p.add_argument("--sensitivity", type=fraction, help="the detectors' sensitivity (default: theirs)")
    p.add_argument("--model", default="adm-256-uncond",
                   help="catalog id, checkpoint path, test-tiny (random weights) or oracle (true noise; checks the algebra)")
    p.add_argument("--limit", type=whole(1), help="use only the first N photos")
    p.add_argument("--noise", type=fraction, default=0.0, help="σ of Gaussian noise added to the observation, in [0, 1] units")
    p.add_argument("--mask", default="boxes", help="inpainting mask: boxes | strokes | a mask image (white = fill)")
    p.add_argument("--mask-seed", type=int, default=0, help="seed of generated masks (photo i uses seed + i)")
    p.add_argument("--blur", default="gauss:3", help="kernel of the deblur task (gauss:SIGMA | uniform:SIZE | kernel:PATH)")
    p.add_argument("--sr-kernel", default="avgpool", choices=("avgpool", "bicubic"), help="downscaling of the SR tasks")
    p.add_argument("--steps", type=int, default=100, help="sampling steps")
    p.add_argument("--eta", type=fraction, default=0.85, help="DDIM η, 0..1")
    p.add_argument("--size", type=whole(16), default=256, help="side of the square test images")
    p.add_argument("--window", type=int, default=256, help="the pipeline's window")
    p.add_argument("--seed", type=int, default=1234, help="seed of the sampler and of the added noise")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--report", help="write per-image results to report.json or report.csv")
    real = p.add_argument_group("--task real (two stages: a clean-up network, then --model)")
    real.add_argument("--cleanup", metavar="ID|PATH", help="the stage-1 clean-up network")
    real.add_argument("--fidelity", type=fraction, nargs="+", default=[0.25, 0.5, 0.75], metavar="F",
                      help="stage 1 + 2 is measured at each of these fidelities")
    real.add_argument("--real-scale", type=whole(1, 8), default=2, metavar="S",
                      help="the degradation downscales by S, the restoration upscales by S")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.evaluation.evaluate import EvalConfig, evaluate, format_table, write_report

    if args.detector:
        return run_detection(args)
    if args.task and "real" in args.task:
        return run_real(args)
    if not args.task:
        raise InputError("give --task (restoration) or --detector (damage detection)")

    config = EvalConfig(
        data=args.data, tasks=tuple(dict.fromkeys(args.task)), model=args.model, limit=args.limit, noise=args.noise,
        mask=args.mask, mask_seed=args.mask_seed, steps=args.steps, size=args.size, blur=args.blur,
        sr_kernel=args.sr_kernel, eta=args.eta, seed=args.seed, device=args.device, window=args.window,
    )
    report_path = _report_path(args, _inputs(args))
    if args.model != "oracle":
        check_model(args.model)  # before the first photo is read and degraded
    return _measure(evaluate(config, warn=_warn), report_path, format_table,
                    lambda path, results, complete: write_report(path, config, results, complete=complete),
                    lambda r: f"{r.image} {r.task}: PSNR {r.psnr:.2f} SSIM {r.ssim:.4f} (A†y {r.baseline_psnr:.2f}) "
                              f"consistency {r.consistency:.2e}, {r.seconds:.1f} s")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _report_path(args: argparse.Namespace, inputs: dict[str, Optional[Path]]) -> Optional[Path]:
    """``--report`` checked before any work: a .json or .csv that can be written and is none of the inputs."""
    report_path = Path(args.report) if args.report else None
    if report_path is not None:
        if report_path.suffix.lower() not in (".json", ".csv"):
            raise InputError("--report must end in .json or .csv")
        check_writable_file(report_path, "the report")
        refuse_overwriting(inputs, {"the report": report_path})
    return report_path


def _measure(results_iter, report_path: Optional[Path], table, write, line) -> int:
    """Print each result's ``line`` as it comes, then the ``table`` and the report (``write``). Ctrl-C keeps
    what was measured: the table and the report show it, marked incomplete."""
    results = []
    try:
        for r in results_iter:
            results.append(r)
            print(line(r), file=sys.stderr)
    except KeyboardInterrupt:
        print(f"interrupted after {len(results)} result(s); the table and report cover only those", file=sys.stderr)
        if not results:
            return 130
        interrupted = True
    else:
        interrupted = False
    print(table(results))
    if report_path is not None:
        with writing(report_path, kept="; the results are printed above"):
            print(f"report: {write(report_path, results, not interrupted)}")
    return 130 if interrupted else 0


def _inputs(args: argparse.Namespace) -> dict[str, Optional[Path]]:
    """The files the evaluation reads: the photos, the mask and blur kernel files, the model."""
    from engine.training.data import find_images

    data = Path(args.data)
    photos = {f"the evaluated photo {p.relative_to(data)}": p for p in find_images(data, what="evaluation data folder")}
    kind, _, kernel = args.blur.partition(":")
    files = {"the mask": None if args.mask in ("boxes", "strokes") else Path(args.mask),
             "the blur kernel": Path(kernel.strip()) if kind.strip().lower() == "kernel" else None}
    return {**photos, **files, **(model_inputs(args.model) if args.model != "oracle" else {})}


def run_real(args: argparse.Namespace) -> int:
    """``--task real``: the degraded photo, stage 1 alone and stage 1 + 2 at each fidelity."""
    from engine.evaluation.real import RealEvalConfig, evaluate_real, format_real_table, write_real_report

    if args.task != ["real"]:
        raise InputError("--task real runs on its own: evaluate the other tasks in another run")
    if not args.cleanup:
        raise InputError("--task real needs --cleanup MODEL (the stage-1 clean-up network)")
    config = RealEvalConfig(data=args.data, cleanup=args.cleanup, model=args.model,
                            fidelities=tuple(dict.fromkeys(args.fidelity)), scale=args.real_scale, limit=args.limit,
                            size=args.size, steps=args.steps, eta=args.eta, seed=args.seed, device=args.device,
                            window=args.window)
    report_path = _report_path(args, {**_inputs(args), **cleanup_inputs(args.cleanup)})
    check_model(args.cleanup)
    if args.model != "oracle":
        check_model(args.model)
    return _measure(evaluate_real(config, warn=_warn), report_path, format_real_table,
                    lambda path, results, complete: write_real_report(path, config, results, complete=complete),
                    lambda r: f"{r.image} {r.variant}: PSNR {r.psnr:.2f} SSIM {r.ssim:.4f}, {r.seconds:.1f} s")


def run_detection(args: argparse.Namespace) -> int:
    """``evaluate --detector D [--detector D2] --data DIR``: the damage detectors' quality table."""
    import json

    from engine.detection import DEFAULT_SENSITIVITY
    from engine.evaluation.damage import evaluate_detection, format_summary, summarize
    from engine.training.data import find_images

    photos = find_images(args.data, what="evaluation data folder")[: args.limit]
    sensitivity = DEFAULT_SENSITIVITY if args.sensitivity is None else args.sensitivity
    report_path = Path(args.report) if args.report else None
    if report_path is not None:
        if report_path.suffix.lower() != ".json":
            raise InputError("--report of a detection evaluation must end in .json")
        check_writable_file(report_path, "the report")
        refuse_overwriting({f"the evaluated photo {p.name}": p for p in photos}, {"the report": report_path})
    results = []
    for r in evaluate_detection(photos, args.detector, sensitivity=sensitivity, seed=args.mask_seed, device=args.device):
        results.append(r)
        print(f"{r.image} {r.detector}: {r.true_positive} found, {r.false_positive} false, {r.false_negative} missed; "
              f"{100 * r.clean_marked:.2f} % of the clean photo marked, {r.seconds:.2f} s", file=sys.stderr)
    summaries = summarize(results)
    print(format_summary(summaries, sensitivity, note=f"Synthetic damage seeds {args.mask_seed}..."
                                                     f"{args.mask_seed + len(photos) - 1}, {len(photos)} photos."))
    if report_path is not None:
        from dataclasses import asdict

        with writing(report_path):
            report_path.write_text(json.dumps({"sensitivity": sensitivity, "summaries": [asdict(s) for s in summaries],
                                               "photos": [asdict(r) for r in results]}, indent=1))
    return 0
