"""What the subcommands share: checks on the files a command will write, made before any work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from engine.errors import InputError


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file: through symlinks and hard links when both exist,
    else by their resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def refuse_overwriting(inputs: dict[str, Optional[Path]], outputs: dict[str, Optional[Path]]) -> None:
    """Refuse an output that names one of the inputs: the originals are never overwritten.
    Keys are how the message names each path (e.g. "OUTPUT", "the mask")."""
    for out_name, out in outputs.items():
        for in_name, source in inputs.items():
            if out is not None and source is not None and same_file(out, source):
                raise InputError(f"{out_name} {out} is {in_name}: choose another one "
                                 "(the originals are never overwritten)")
