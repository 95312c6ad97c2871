"""What the subcommands share: argument types, and checks on the files a command will write,
made before any work."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from engine.errors import EngineError, InputError


# ------------------------------------------------------------------------ argument types
def whole(minimum: int, maximum: Optional[int] = None, multiple_of: int = 1) -> Callable[[str], int]:
    """An argparse type: a whole number in [minimum, maximum] that is a multiple of ``multiple_of``."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be ≤ {maximum}, got {value}")
        if value % multiple_of:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple_of}, got {value}")
        return value

    return convert


def non_negative(text: str) -> float:
    """An argparse type: a finite number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text}")
    return value


def positive(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def below_one(text: str) -> float:
    """An argparse type: a number in [0, 1) (e.g. a decay)."""
    value = fraction(text)
    if value == 1:
        raise argparse.ArgumentTypeError(f"must be below 1, got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    value = non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def parse_travel(text: str) -> tuple[int, int]:
    """``"L,R"`` -> (travel_length, travel_repeat), both ≥ 1."""
    parts = text.replace(" ", "").split(",")
    try:
        length, repeat = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected L,R (two whole numbers, e.g. 10,3), got {text!r}") from None
    if length < 1 or repeat < 1:
        raise argparse.ArgumentTypeError(f"time travel length and repeat must be ≥ 1, got {text!r}")
    return length, repeat


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` shows each option's default as "(default: X)" where that helps: not for a flag, nor
    for a default of None or empty ("not set"), nor where the help text gives its own
    "(default: ...)". An option whose default lives elsewhere shows it through :func:`show_defaults`."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = getattr(action, "shown_default", action.default)
        if (action.nargs == 0 or default is None or default is argparse.SUPPRESS or "(default" in text
                or (isinstance(default, (str, list, tuple)) and not default)):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def show_defaults(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """Have ``--help`` show ``defaults`` (dest -> value) for the options whose argparse default stays
    None, so that only the options the user gave are passed on and each default stays in the one
    place it lives (e.g. RestoreRequest)."""
    for action in parser._actions:
        if action.dest in defaults and action.default is None:
            action.shown_default = defaults[action.dest]


def name_commands(subparsers) -> None:
    """Call for the subcommands, once added, by their names: a missing one is then reported as
    "required: {list,download,...}" instead of by the internal ``dest``."""
    subparsers.metavar = "{" + ",".join(subparsers.choices) + "}"


# ---------------------------------------------------------------------------- destinations
def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file: through symlinks and hard links when both exist,
    else by their resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _clash(others: dict[str, Optional[Path]], outputs: dict[str, Optional[Path]]) -> Optional[tuple]:
    """(output name, output, other name, other) of the first output that names one of ``others``."""
    for out_name, out in outputs.items():
        for other_name, other in others.items():
            if out is not None and other is not None and same_file(out, other):
                return out_name, out, other_name, other
    return None


def refuse_overwriting(inputs: dict[str, Optional[Path]], outputs: dict[str, Optional[Path]]) -> None:
    """Refuse an output that names one of the files the command reads: those are never overwritten.
    Keys are how the message names each path (e.g. "OUTPUT", "the mask")."""
    clash = _clash(inputs, outputs)
    if clash:
        out_name, out, in_name, source = clash
        raise InputError(f"{out_name} {out} is {in_name} ({source}): choose another one "
                         "(the files a command reads are never overwritten)")


def refuse_same_destination(written: dict[str, Optional[Path]], outputs: dict[str, Optional[Path]]) -> None:
    """Refuse an output that names another file the command writes: one would replace the other."""
    clash = _clash(written, outputs)
    if clash:
        out_name, out, other_name, other = clash
        raise InputError(f"{out_name} {out} is also {other_name} ({other}): give each its own name")


def refuse_writing_inside(folder: Optional[Path], folder_name: str, outputs: dict[str, Optional[Path]],
                          why: str) -> None:
    """Refuse an output at or inside an input folder the command reads as a whole (e.g. training
    data searched recursively); ``why`` says what writing there would do. A folder that does not
    exist is left to the command's own check."""
    if folder is None or not Path(folder).is_dir():
        return
    root = Path(folder).resolve()
    for out_name, out in outputs.items():
        target = Path(out).resolve() if out is not None else None
        if target is not None and (target == root or root in target.parents):
            raise InputError(f"{out_name} {out} is inside {folder_name} {folder}: {why}; choose a place outside it")


def model_inputs(model: Optional[str]) -> dict[str, Optional[Path]]:
    """The files a command reads for ``--model``, keyed for :func:`refuse_overwriting`: the checkpoint
    and the metadata beside it. None for a built-in network, or for a model that cannot be found
    (loading it fails before anything is written)."""
    from engine.models import model_files

    try:
        files = model_files(model) if model else ()
    except EngineError:
        files = ()
    return dict(zip(("the model", "the model's metadata"), files))


def check_model(spec: str) -> None:
    """Refuse a ``--model`` that cannot be loaded before any photo is read, with the loader's own
    messages: an unknown id (listing the known ones), a model not installed, a missing file, a
    folder, or a file that is not a checkpoint. The built-in test networks pass."""
    from engine.models import TINY_MODELS
    from engine.models.catalog import resolve_model_file
    from engine.models.checkpoint import checkpoint_format
    from engine.resshift.load import TINY as TINY_UPSCALER

    if spec in TINY_MODELS or spec == TINY_UPSCALER:
        return
    path = Path(spec)
    checkpoint_format(resolve_model_file(path if path.exists() else spec))  # an existing path is a file, never an id


def check_writable_file(path: Path, what: str) -> None:
    """Refuse a file destination that cannot be written (a folder, under a file, in a read-only
    place), before any work starts. ``what`` names it in the message (e.g. "OUTPUT", "the report")."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder: give a file name")
    _check_can_create_in(path.parent, what, path)


def check_writable_folder(path: Path, what: str) -> None:
    """Refuse a folder destination that is a file or cannot be created or written, before any work."""
    path = Path(path)
    if os.path.exists(path) and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder")
    _check_can_create_in(path, what, path)


@contextlib.contextmanager
def writing(path: Path, kept: str = "") -> Iterator[None]:
    """A write of ``path`` that fails says so in one sentence, plus ``kept`` (what is not lost),
    instead of a traceback."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}{kept}") from None


def _check_can_create_in(folder: Path, what: str, path: Path) -> None:
    """Files can be created in ``folder``, or in its nearest existing ancestor (missing folders are
    made when the file is written): a real probe, since permissions alone do not tell (e.g. /proc)."""
    existing = Path(os.path.abspath(folder))
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write {what} {path}: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".restorer-write-check-", dir=existing)
    except OSError as exc:
        raise InputError(f"cannot write {what} {path}: {existing} is not writable ({exc.strerror or exc})") from None
    os.close(handle)
    os.unlink(probe)
