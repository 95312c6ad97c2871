"""Where an imported model goes: a free id and a file name of its own in the models folder.
Called with the folder's lock held (:mod:`engine.models.folder_lock`), so two imports never pick
the same one."""

from __future__ import annotations

import itertools
import re
import unicodedata
from pathlib import Path
from typing import Optional

from engine.errors import EngineError
from engine.models import catalog as cat


def slug(text: str) -> str:
    """An id from a file name: lower-case ASCII, accents dropped ("Mödel 1" -> "model-1")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9._-]+", "-", ascii_text.lower()).strip("-._") or "model"


def new_custom_place(directory: Path, src: Path, model_id: Optional[str]) -> tuple[str, Path]:
    """An id no model has and the file for it: ``<id><suffix>``, never a file that exists, or the
    source itself when it already lies unregistered in the models folder."""
    entries = cat.all_entries(directory)
    taken_files = {e.file_name for e in entries.values()} | {cat.REGISTRY_NAME}
    in_place = same_file(src.parent, directory) and src.name not in taken_files

    def dest(mid: str) -> Path:
        return src if in_place else directory / f"{mid}{src.suffix}"

    def free(mid: str) -> bool:
        path = dest(mid)
        occupied = path.name in taken_files or (not in_place and (
            path.exists() or path.is_symlink() or path.with_name(path.name + cat.PART_SUFFIX).exists()))
        return mid not in entries and not occupied

    if model_id:
        mid = slug(model_id)
        if not free(mid):
            raise EngineError(f"the id '{mid}' is already used by another model or file; choose another id")
    else:
        base = slug(src.stem)
        mid = next(m for m in (base if n == 1 else f"{base}-{n}" for n in itertools.count(1)) if free(m))
    return mid, dest(mid)


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False
