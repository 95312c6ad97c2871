"""Where an imported model goes: the catalog model it is, or a free id and a file name of its own
in the models folder. Called with the folder's lock held (:mod:`engine.models.folder_lock`), so
two imports never pick the same one."""

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


def match_catalog(directory: Path, src: Path, size: int, family: str, sha256: str) -> Optional[cat.ModelEntry]:
    """The catalog model this file is, unless another file already holds that model's place."""
    registry = cat.read_registry(directory)
    for entry in cat.load_catalog().values():
        if entry.architecture != family or (entry.sha256 and entry.sha256 != sha256):
            continue
        placed = cat.state_of(entry, directory, registry)
        if placed.status == cat.INSTALLED and not same_file(placed.path, src):
            continue  # never replace an installed file with other bytes
        if entry.size_exact and entry.size_bytes == size:
            return entry
        plausible = entry.size_bytes is None or abs(size - entry.size_bytes) <= 0.05 * entry.size_bytes
        if entry.file_name == src.name and plausible and not entry.size_exact:
            return entry
    return None


def imported_from(directory: Path, raw: dict, src: Path) -> bool:
    """Whether the custom model ``raw`` was imported from the file ``src``. Imports record its
    absolute path. Older ones may hold a path relative to a working folder that was not recorded,
    so in general it cannot be resolved: a linked import still tells (its file in the models folder
    is, or points at, the original), else the path is taken relative to the current folder, which
    is right when run from the folder of that import (the entry is then made absolute)."""
    if not raw.get("imported_from"):
        return False
    origin = Path(raw["imported_from"])
    if origin.is_absolute():
        return same_file(origin, src)
    installed = directory / raw.get("file_name", "")
    if same_file(installed, src):
        return True
    return not installed.is_symlink() and same_file(origin, src)  # a link knows where it came from
