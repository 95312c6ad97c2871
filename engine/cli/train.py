"""``python -m engine train``: train or fine-tune a diffusion prior on a folder of photos."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

from engine.cli.common import (below_one, check_writable_file, positive, refuse_overwriting, refuse_writing_inside,
                               whole, writing)
from engine.errors import InputError
from engine.events import LogEvent


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a diffusion model on a folder of photos",
        description="DDPM ε-prediction training (linear β 1e-4..0.02, 1000 steps) on random crops. "
        "Writes MODEL.pt (EMA weights, official layout) and MODEL.json (metadata).",
    )
    p.add_argument("--data", required=True, help="folder of training images (searched recursively)")
    p.add_argument("--out", required=True, help="output model file, e.g. my-model.pt or my-model.safetensors")
    p.add_argument("--init", help="checkpoint to fine-tune from (architecture detected from the file)")
    p.add_argument("--size", type=int, default=256, choices=(256, 128, 64, 32), help="crop size")
    p.add_argument("--arch", default="adm-small", choices=("adm-small", "adm-256", "ddpm", "adm-tiny"),
                   help="network for training from scratch (ignored with --init)")
    p.add_argument("--steps", type=whole(1), default=10000, help="total optimizer steps")
    p.add_argument("--batch", type=whole(1), default=8, help="crops per step")
    p.add_argument("--lr", type=positive, default=1e-4, help="AdamW learning rate")
    p.add_argument("--warmup", type=whole(0), default=100, help="linear learning-rate warm-up steps")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast on GPUs")
    p.add_argument("--ema", type=below_one, default=0.9999, help="EMA decay of the saved weights")
    p.add_argument("--sample-every", type=whole(0), default=1000, help="save a sample grid every N steps (0 = never)")
    p.add_argument("--sample-steps", type=whole(1, 1000), default=25, help="DDIM steps for the sample grid")
    p.add_argument("--checkpoint-every", type=whole(0), default=1000,
                   help="also save resumable state every N steps (0 = only at the end and on Ctrl-C)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.train-state/ exactly where it stopped")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops, the noise and the initial weights")
    p.add_argument("--skip-bad-files", action="store_true", help="leave unreadable images out instead of stopping")
    p.add_argument("--register", action="store_true", help="add the trained model to the app's model list")
    p.add_argument("--name", help="display name when registering (default: the file name)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.training.checkpoint_io import MODEL_FORMATS
    from engine.training.trainer import TrainCancelled, TrainConfig, train

    out = Path(args.out)
    if out.suffix.lower() not in MODEL_FORMATS:
        raise InputError(f"--out must end in {' or '.join(MODEL_FORMATS)}, got {out.name}")
    check_writable_file(out, "--out")
    _refuse_writing_over_inputs(out, Path(args.init) if args.init else None, Path(args.data))
    config = TrainConfig(
        data=args.data, out=args.out, arch=args.arch, size=args.size, init=args.init, steps=args.steps,
        batch=args.batch, lr=args.lr, warmup=args.warmup, device=args.device, precision=args.precision,
        ema=args.ema, sample_every=args.sample_every, sample_steps=args.sample_steps,
        checkpoint_every=args.checkpoint_every, resume=args.resume, seed=args.seed,
        skip_bad_files=args.skip_bad_files,
    )
    cancel = threading.Event()
    with writing(out):
        finished = _follow(train(config, cancel=cancel), cancel)
    if isinstance(finished, TrainCancelled):
        print(f"cancelled at step {finished.step}: the training state is kept in {Path(finished.saved).parent}; "
              "run the same command with --resume to continue" if finished.saved
              else "cancelled before the first step: nothing was saved", file=sys.stderr)
        return 130
    if finished is None:
        return 1
    print(f"wrote {finished.model_path} ({finished.meta['steps']} steps, {finished.meta['image_size']} px)")
    if args.register:
        print(register_model(Path(finished.model_path), args.name))
    return 0


def _refuse_writing_over_inputs(out: Path, init: Optional[Path], data: Path) -> None:
    """The files training writes (the model, its metadata, the training state with the sample
    grids) must not replace the --init model or its metadata, nor land among the training photos."""
    from engine.training.checkpoint_io import sidecar_path, train_state_dir

    written = {"--out": out, "the metadata of --out": sidecar_path(out)}
    refuse_overwriting({"--init": init, "the metadata of --init": sidecar_path(init) if init else None}, written)
    refuse_writing_inside(data, "the training data folder", {**written, "the training state": train_state_dir(out)},
                          "the sample grids it saves would become training photos")


def _follow(events: Iterator[Any], cancel: threading.Event) -> Any:
    """Show training events on stderr (a tqdm bar over steps), with Ctrl-C setting ``cancel``;
    returns the TrainFinished or TrainCancelled event, if any."""
    from tqdm import tqdm

    from engine.cli.console import cancel_on_ctrl_c
    from engine.training.trainer import SampleGridSaved, TrainCancelled, TrainFinished, TrainProgress

    bar = None
    finished = None
    try:
        with cancel_on_ctrl_c(cancel, lambda line: _say(bar, line)):
            for event in events:
                if isinstance(event, TrainProgress):
                    if bar is None:
                        bar = tqdm(total=event.total, initial=event.step - 1, unit="step", file=sys.stderr,
                                   dynamic_ncols=True)
                    bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
                    bar.update(1)
                elif isinstance(event, SampleGridSaved):
                    _say(bar, f"step {event.step}: samples in {event.path}")
                elif isinstance(event, LogEvent):
                    _say(bar, f"{event.level}: {event.message}" if event.level != "info" else event.message)
                elif isinstance(event, (TrainFinished, TrainCancelled)):
                    finished = event
    finally:
        if bar is not None:
            bar.close()
    return finished


def _say(bar, message: str) -> None:
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def register_model(path: Path, name: str | None) -> str:
    """Add the trained file to the app's model list (a copy in the models folder, custom entry), or
    update the entry an earlier run registered from the same file (same id)."""
    from engine.models.store import AlreadyInstalled, import_model_file, update_imported_model
    from engine.training.checkpoint_io import read_meta

    path = path.absolute()  # the entry remembers where it came from, for the next run to find it
    meta = read_meta(path) or {}
    description = f"Trained on {meta.get('data', {}).get('folder', '?')} for {meta.get('steps', '?')} steps at {meta.get('image_size', '?')} px"
    updated = update_imported_model(path, display_name=name, description=description)
    if updated is not None:
        return f"updated model {updated.model_id!r} ({updated.path})"
    try:
        result = import_model_file(path, display_name=name or path.stem, description=description)
    except AlreadyInstalled as exc:  # the same weights, registered from another file: nothing to add
        return f"not registered again: {exc}"
    return f"registered as model {result.model_id!r} ({result.path})"
