"""``python -m engine restore INPUT -o OUTPUT [options]`` — restore one photo or a folder of photos.

Builds a :class:`~engine.request.RestoreRequest`, drains :func:`engine.pipeline.restore`, renders
its events on stderr (tqdm progress over denoiser calls, log lines), saves the result with the
input's metadata, alpha and bit depth, and optionally writes the run report as JSON.
Exit codes: 0 done, 1 some files of a folder failed, 2 unusable input/arguments, 130 cancelled (Ctrl-C),
143 terminated (SIGTERM: the finished windows are kept as after Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import threading
import typing
from pathlib import Path
from typing import Any, Iterator, Optional


from engine.cli.common import (check_model, check_writable_file, check_writable_folder, fraction, model_inputs,
                               non_negative, parse_travel, refuse_overwriting, refuse_same_destination, show_defaults,
                               whole, writing)
from engine.errors import Cancelled, EngineError, InputError
from engine.cli.console import EventRenderer, StopRequest, drain, exit_code_of, stopped_by
from engine.cli.two_stages import check_cleanup_options, cleanup_inputs, describe_two_stages
from engine.host_memory import restore_bytes_per_input_pixel
from engine.image_io import IMAGE_EXTENSIONS, SAVE_FORMATS, load_image, load_mask, save_image
from engine.report import peak_rss_mb, write_report
from engine.request import MASK_AUTO, Quirks, RestoreRequest, Tasks, quirk_docs

STATE_SUFFIX = ".restorer-state"
QUIRK_NAMES = tuple(f.name for f in dataclasses.fields(Quirks))


def _choices(cls: type, name: str) -> tuple[str, ...]:
    """The allowed values of a Literal field, read from the dataclass (defaults live there)."""
    hint = typing.get_type_hints(cls)[name]
    candidates = [hint] if typing.get_origin(hint) is typing.Literal else list(typing.get_args(hint))
    for arg in candidates:
        if typing.get_origin(arg) is typing.Literal:
            return tuple(v for v in typing.get_args(arg) if isinstance(v, str))
    raise TypeError(f"{cls.__name__}.{name} is not a Literal field")


def _default(cls: type, name: str) -> Any:
    """A dataclass field's default (defaults live there)."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


# ------------------------------------------------------------------------ argument types
def parse_deblur(text: str) -> str:
    """``gauss:SIGMA`` (SIGMA > 0), ``uniform:SIZE`` (whole SIZE ≥ 1) or ``kernel:FILE``."""
    kind, _, value = text.partition(":")
    kind = kind.strip().lower()
    try:
        if kind == "gauss" and float(value) > 0:
            return f"gauss:{float(value):g}"
        if kind == "uniform" and int(value) >= 1:
            return f"uniform:{int(value)}"
    except ValueError:
        pass
    if kind == "kernel" and value:
        return f"kernel:{value}"
    raise argparse.ArgumentTypeError(f"expected gauss:SIGMA, uniform:SIZE or kernel:FILE, got {text!r}")


def parse_batch(text: str) -> Any:
    if text.strip().lower() == "auto":
        return "auto"
    return whole(1)(text)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "restore",
        help="restore a photo (or every photo in a folder)",
        description="Fill masked areas, colorize, upscale, deblur or denoise photos with a diffusion model.",
    )
    p.add_argument("input", metavar="INPUT", help="a photo, or a folder of photos")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="output file (a folder in folder mode)")
    task = p.add_argument_group("what to do (at least one)")
    task.add_argument("--mask", metavar="MASK|auto", help="white = fill (a folder of same-named masks in folder "
                      "mode); auto: fill the damage the built-in detector finds (see `detect`)")
    task.add_argument("--inpaint", action="store_true", help="fill the masked areas (implied by --mask)")
    task.add_argument("--colorize", action="store_true", help="colour a black-and-white photo")
    task.add_argument("--sr", type=whole(1), metavar="N", help="upscale N times")
    task.add_argument("--sr-kernel", choices=_choices(Tasks, "sr_kernel"), help="how the photo was downscaled")
    task.add_argument("--deblur", type=parse_deblur, metavar="gauss:SIGMA|uniform:SIZE|kernel:FILE")
    task.add_argument("--noise", type=fraction, metavar="SIGMA", help="noise level of the photo, 0..1")
    two = p.add_argument_group("damage nobody can name (two stages: a restoration network cleans, then the model "
                               "restores; combines with --mask, --colorize, --sr)")
    two.add_argument("--cleanup", metavar="ID|PATH", help="the stage-1 clean-up network: catalog id or file "
                     "(python -m engine models list: purpose clean-up)")
    two.add_argument("--fidelity", type=fraction, metavar="F",
                     help="1 = the cleaned photo as is, lower = more detail from the diffusion model")
    two.add_argument("--warm-start", action="store_true", default=None,
                     help="fast: stage 2 starts from the cleaned photo, noised, with fewer steps")
    model = p.add_argument_group("model and sampler")
    model.add_argument("--model", metavar="ID|PATH|test-tiny", help="catalog id, checkpoint file, or test-tiny")
    model.add_argument("--class", dest="class_label", type=whole(0), metavar="N",
                       help="ImageNet class, for a class-conditional model")
    model.add_argument("--guidance", dest="guidance_scale", type=non_negative, metavar="SCALE",
                       help="classifier guidance towards --class (0 = off)")
    model.add_argument("--classifier", metavar="ID|PATH", help="the ADM classifier that guides (with --guidance)")
    model.add_argument("--upscaler", metavar="ID|PATH", help="a fast upscaler that does the --sr first (e.g. "
                       "resshift-realsr-x4; as --model it also works alone); --model then fills or colorizes "
                       "its result")
    model.add_argument("--steps", type=whole(1), metavar="N", help="sampling steps")
    model.add_argument("--travel", type=parse_travel, metavar="L,R", help="time travel length and repeats (1,1 = none)")
    model.add_argument("--eta", type=fraction, metavar="E", help="DDIM η, 0..1")
    model.add_argument("--sampler", choices=_choices(RestoreRequest, "sampler"),
                       help="DDIM/DDRM η form, or DDPM posterior form")
    model.add_argument("--seed", type=int, metavar="S", help="seed of the sampler's noise")
    model.add_argument("--device", metavar="auto|cpu|cuda|cuda:N", help="where the model runs")
    model.add_argument("--precision", choices=_choices(RestoreRequest, "precision"),
                       help="auto: bf16 on GPUs and on CPUs with native bf16, else fp32")
    model.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the network: faster steps after a one-time compile (cached on disk)")
    model.add_argument("--quirk", action="append", default=[], choices=QUIRK_NAMES, metavar="NAME",
                       help="reference-code parity switch, repeatable (all off = the paper): "
                       + "; ".join(f"{name}: {doc}" for name, doc in quirk_docs().items()))
    tiling = p.add_argument_group("large photos")
    tiling.add_argument("--tiling", choices=_choices(RestoreRequest, "tiling"),
                        help="none: the whole photo as one window; auto, msr: window by window "
                        "(Mask-Shift Restoration)")
    tiling.add_argument("--hir", action=argparse.BooleanOptionalAction, default=None,
                        help="hierarchical restoration (default: where it helps)")
    tiling.add_argument("--hir-start", type=whole(1), metavar="T",
                        help="HiR phase 2 starts from phase 1's result noised to timestep T (1..999)")
    tiling.add_argument("--window", type=whole(8), metavar="N", help="window side, px")
    tiling.add_argument("--overlap", type=whole(0), metavar="N", help="overlap of neighbouring windows, px")
    tiling.add_argument("--batch", type=parse_batch, metavar="auto|N",
                        help="windows per denoiser call (auto: from the free memory)")
    saved = tiling.add_mutually_exclusive_group()
    saved.add_argument("--resume", action="store_true", help=f"continue from OUTPUT{STATE_SUFFIX}/")
    saved.add_argument("--restart", action="store_true",
                       help=f"discard the finished windows in OUTPUT{STATE_SUFFIX}/ and start over")
    out = p.add_argument_group("output")
    out.add_argument("--report", metavar="REPORT.json", help="write the run report as JSON")
    out.add_argument("--quality", type=whole(1, 100), default=95, metavar="Q",
                     help="JPEG/WebP quality, 1..100; 100 is lossless WebP")
    out.add_argument("--bit-depth", type=int, choices=(8, 16),
                     help="bits per channel of the saved file (default: as the input)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    request_defaults = {f.name: f.default for f in dataclasses.fields(RestoreRequest)
                        if f.default is not dataclasses.MISSING}  # tasks and quirks come from factories
    show_defaults(p, {**request_defaults, "sr_kernel": _default(Tasks, "sr_kernel"),
                      "travel": (request_defaults["travel_length"], request_defaults["travel_repeat"])})
    p.set_defaults(func=run)


# ------------------------------------------------------------------------ request building
def check_tasks(args: argparse.Namespace) -> None:
    """Argument combinations that can be refused before any photo is read, and a --model that cannot load."""
    if args.inpaint and not args.mask:
        raise InputError("--inpaint needs --mask (white = fill)")
    if not (args.mask or args.inpaint or args.colorize or (args.sr or 1) > 1 or args.deblur or args.noise
            or args.cleanup):
        raise InputError("nothing to do: give --mask/--inpaint, --colorize, --sr N, --deblur, --noise or --cleanup")
    check_cleanup_options(args)
    output, source = Path(args.output), Path(args.input)
    if output.is_dir() and not source.is_dir():
        raise InputError(f"OUTPUT {output} is a folder: give a file name, e.g. {output / source.name}")
    if output.suffix.lower() not in SAVE_FORMATS and not source.is_dir():
        raise InputError(f"cannot write {args.output!r}: use .png, .jpg, .tif or .webp")
    if source.is_dir() and output.suffix.lower() in IMAGE_EXTENSIONS and not output.exists():
        raise InputError(f"OUTPUT {output} looks like a file name, but INPUT {source} is a folder: give a folder "
                         f"for the restored photos, e.g. {output.with_suffix('')}")
    check_overlap(args)
    for spec in (args.model, args.classifier, args.cleanup, args.upscaler):
        if spec:
            check_model(spec)


def check_overlap(args: argparse.Namespace) -> None:
    """The windows must overlap less than their size; the default overlap is named as such."""
    window = args.window if args.window is not None else _default(RestoreRequest, "window")
    overlap = args.overlap if args.overlap is not None else _default(RestoreRequest, "overlap")
    if overlap >= window:
        which = "" if args.overlap is not None else " (the default)"
        raise InputError(f"the overlap {overlap}{which} must be smaller than the window {window}: "
                         f"add --overlap N with N below {window}")


def build_request(args: argparse.Namespace, image: Any, mask: Any = None,
                  resume_dir: Optional[str] = None) -> RestoreRequest:
    """Only options the user gave are passed, so every default comes from RestoreRequest/Tasks."""
    tasks = {"inpaint": bool(args.mask or args.inpaint), "colorize": bool(args.colorize)}
    for name in ("sr", "sr_kernel", "deblur", "noise"):
        if getattr(args, name) is not None:
            tasks[name] = getattr(args, name)
    fields: dict[str, Any] = {}
    for name in ("model", "class_label", "guidance_scale", "classifier", "upscaler", "steps", "eta", "sampler", "seed",
                 "device", "precision", "compile", "tiling", "hir", "hir_start", "window", "overlap", "batch", "cleanup",
                 "fidelity", "warm_start"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.travel is not None:
        fields["travel_length"], fields["travel_repeat"] = args.travel
    if args.quirk:
        fields["quirks"] = Quirks(**{name: True for name in args.quirk})
    return RestoreRequest(image=image, mask=mask, tasks=Tasks(**tasks), resume_dir=resume_dir, **fields)


# ---------------------------------------------------------------------------------- runs
def state_dir_for(target: Path) -> Path:
    """Where the finished windows of an interrupted run for ``target`` are kept."""
    return Path(str(target) + STATE_SUFFIX)


def _saved_windows(state_dir: Path) -> int:
    from engine.tiling.resume import ResumeState

    return ResumeState.saved_windows(state_dir)


def check_saved_progress(args: argparse.Namespace, targets: list[Path]) -> None:
    """Finished windows of an interrupted run are never discarded silently: without --resume or
    --restart, a target whose saved state holds any is refused before anything runs."""
    if args.resume or args.restart:
        return
    for target in targets:
        saved = _saved_windows(state_dir_for(target))
        if saved:
            raise InputError(f"{state_dir_for(target)} holds {saved} finished window(s) of an interrupted "
                             "run: add --resume to continue it, or --restart to discard it and start over")


def restore_file(args: argparse.Namespace, source: Path, target: Path, mask_path: Optional[Path],
                 renderer: EventRenderer, cancel: threading.Event,
                 report_path: Optional[Path] = None) -> dict[str, Any]:
    """Restore one photo to ``target`` (and its report to ``report_path``); returns the report
    (with input/output paths and notes). The job's saved state is removed once all is written."""
    if target.suffix.lower() not in SAVE_FORMATS:
        raise InputError(f"cannot write {target.name!r}: use .png, .jpg, .tif or .webp")
    state_dir = state_dir_for(target)
    if args.resume:  # asked for: refused now if it cannot be kept (a failure mid-run only warns)
        check_writable_folder(state_dir, "the saved progress")
    # the pipeline reads the photo and the mask itself (or finds the damage): one copy of the pixels
    mask = MASK_AUTO if args.mask == MASK_AUTO else None if mask_path is None else str(mask_path)
    request = build_request(args, str(source), mask, resume_dir=str(state_dir))
    # refused here, before the model loads, when the run would not fit in memory
    loaded = load_image(source, bytes_per_pixel=restore_bytes_per_input_pixel(request.tasks))
    if mask_path is not None:
        load_mask(mask_path, loaded.size)  # a mask of the wrong size is refused before the model loads
    like = dataclasses.replace(loaded, rgb=loaded.rgb[:0, :0])  # saving needs only the metadata
    del loaded
    if not args.resume:  # check_saved_progress let it through: nothing finished there, or --restart
        shutil.rmtree(state_dir, ignore_errors=True)
    finished = drain(request, renderer, cancel)
    with _finished_work_kept(state_dir):
        notes = save_image(target, finished.result, like=like, quality=args.quality, bit_depth=args.bit_depth)
        report = dict(finished.report)
        report.setdefault("peak_rss_mb", peak_rss_mb())
        report.update(input=str(source), output=str(target), notes=notes)
        if report_path is not None:
            _write_report(report_path, report)
    for note in notes:
        renderer.say(f"note: {note}")
    if report.get("cleanup"):
        renderer.say(describe_two_stages(report))
    shutil.rmtree(state_dir, ignore_errors=True)  # the job is complete
    renderer.say(f"saved {target}")
    return report


@contextlib.contextmanager
def _finished_work_kept(state_dir: Path) -> Iterator[None]:
    """A result that cannot be written after the run says that its finished windows are kept."""
    try:
        yield
    except EngineError as exc:
        if not _saved_windows(state_dir):
            raise
        raise InputError(f"{exc}; the finished work is kept in {state_dir}, and the same command with "
                         "--resume will write it") from None


def _write_report(path: Path, report: dict[str, Any]) -> None:
    with writing(path):
        write_report(path, report)


def run(args: argparse.Namespace) -> int:
    check_tasks(args)
    renderer = EventRenderer(show_progress=not args.no_progress)
    cancel = StopRequest()
    source = Path(args.input)
    if not source.exists():
        raise InputError(f"input not found: {source}")
    report_path = Path(args.report) if args.report else None
    if report_path is not None:
        check_writable_file(report_path, "the report")
    try:
        if source.is_dir():
            return _run_folder(args, source, renderer, cancel)
        target, mask_path = Path(args.output), Path(args.mask) if args.mask not in (None, MASK_AUTO) else None
        refuse_overwriting({"the input photo": source, "the mask": mask_path, **model_inputs(args.model),
                            **cleanup_inputs(args.cleanup)},
                           {"OUTPUT": target, "the report": report_path})
        refuse_same_destination({"OUTPUT": target}, {"the report": report_path})
        check_writable_file(target, "OUTPUT")
        check_saved_progress(args, [target])
        restore_file(args, source, target, mask_path, renderer, cancel, report_path)
    except (Cancelled, KeyboardInterrupt) as exc:
        return _cancelled(renderer, Path(args.output), exit_code_of(exc, cancel))
    return 0


def _cancelled(renderer: EventRenderer, target: Path, code: int) -> int:
    """Say what a run stopped by Ctrl-C or SIGTERM keeps; returns the exit code ``code``."""
    renderer.close()
    saved = _saved_windows(state_dir_for(target))
    if saved:
        renderer.say(f"{stopped_by(code)}. {saved} finished window(s) are kept in {state_dir_for(target)}; "
                     "run the same command with --resume to continue.")
    else:
        renderer.say(f"{stopped_by(code)} before any window was finished.")
    return code


def _find_mask(mask_dir: Path, photo: Path) -> Path:
    exact = mask_dir / photo.name
    if exact.is_file():
        return exact
    for candidate in sorted(mask_dir.iterdir()):
        if candidate.stem == photo.stem and candidate.suffix.lower() in IMAGE_EXTENSIONS:
            return candidate
    raise InputError(f"no mask named {photo.stem}.* in {mask_dir}")


def _folder_targets(out_dir: Path, photos: list[Path], renderer: EventRenderer) -> dict[Path, Path]:
    """The output file of each photo of a folder run: the same name, or the same stem as PNG for a
    format that cannot be written (e.g. BMP). Two photos that would share an output are refused."""
    targets: dict[Path, Path] = {}
    for photo in photos:
        target = out_dir / (photo.name if photo.suffix.lower() in SAVE_FORMATS else photo.stem + ".png")
        other = next((p for p, t in targets.items() if t == target), None)
        if other is not None:
            raise InputError(f"{other.name} and {photo.name} would both be written to {target}: rename one of them")
        targets[photo] = target
    converted = sorted({p.suffix.lower() for p in photos if p.suffix.lower() not in SAVE_FORMATS})
    if converted:
        renderer.say(f"note: {', '.join(converted)} photos are written as PNG (the same name with .png)")
    return targets


def _finished_earlier(target: Path) -> bool:
    """An earlier run wrote ``target`` and no later run of it was interrupted."""
    return target.is_file() and not state_dir_for(target).exists()


def _run_folder(args: argparse.Namespace, folder: Path, renderer: EventRenderer,
                cancel: threading.Event) -> int:
    out_dir = Path(args.output)
    check_writable_folder(out_dir, "OUTPUT")
    mask_dir = Path(args.mask) if args.mask not in (None, MASK_AUTO) else None
    refuse_overwriting({"the input folder": folder, "the mask folder": mask_dir}, {"OUTPUT": out_dir})
    if mask_dir is not None and not mask_dir.is_dir():
        raise InputError(f"in folder mode --mask must be a folder of masks: {mask_dir}")
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not photos:
        raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    if args.report:
        refuse_overwriting({**{f"the input photo {p.name}": p for p in photos}, **model_inputs(args.model),
                            **cleanup_inputs(args.cleanup)},
                           {"the report": Path(args.report)})
    targets = _folder_targets(out_dir, photos, renderer)
    refuse_same_destination({f"the output of {p.name}": t for p, t in targets.items()},
                            {"the report": Path(args.report) if args.report else None})
    check_saved_progress(args, list(targets.values()))
    reports: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    skipped: list[str] = []
    cancelled: Optional[Path] = None
    for number, photo in enumerate(photos, 1):
        target = targets[photo]
        if args.resume and _finished_earlier(target):
            renderer.say(f"[{number}/{len(photos)}] {photo.name}: already restored in {target}, skipped")
            skipped.append(str(photo))
            continue
        renderer.say(f"[{number}/{len(photos)}] {photo.name}")
        try:
            mask_path = _find_mask(mask_dir, photo) if mask_dir is not None else None
            reports.append(restore_file(args, photo, target, mask_path, renderer, cancel))
        except (Cancelled, KeyboardInterrupt) as exc:
            cancelled, code = photo, exit_code_of(exc, cancel)
            break
        except EngineError as exc:
            renderer.say(f"error: {photo.name}: {exc}")
            failed.append({"input": str(photo), "error": str(exc)})
    if args.report:  # also for a cancelled run: the photos finished before it are reported
        _write_report(Path(args.report), {"files": reports, "failed": failed, "skipped": skipped,
                                          "cancelled": str(cancelled) if cancelled else None})
    if cancelled is not None:
        return _cancelled(renderer, targets[cancelled], code)
    renderer.say(f"done: {len(reports)} restored, {len(skipped)} skipped, {len(failed)} failed")
    return 1 if failed else 0
