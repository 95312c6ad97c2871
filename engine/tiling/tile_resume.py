"""Finished tiles of a blended-tile stage (:func:`engine.tiling.blended.run_tiles`) kept on disk, so
an interrupted run continues from them (``done``) instead of computing them again.

Layout: ``resume_dir/<stage>/`` (a folder of its own: the DDNM engine's state in ``resume_dir``
deletes the ``.npy`` files it does not list there) holding

    state.json        {"version", "fingerprint", "boxes": digest of the tile layout}
    tile.<index>.npy  the raw output of tile <index> as the stage stored it (any dtype, no pickle)

state.json is written (atomically) with the first tile, before it, and each tile atomically once
computed: a crash leaves whole tiles only, and a run that saved nothing leaves no folder. A folder
whose fingerprint or tile layout differs from the new run's is deleted (the run starts afresh). A
state that cannot be written never stops the run: the first failure gives a warning for the log and
nothing more is saved. How many tiles a folder holds
counts as finished windows for the CLI's --resume and the app's Continue
(:meth:`engine.tiling.resume.ResumeState.saved_windows`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from engine.atomic_file import atomic_write
from engine.geometry import Box
from engine.tiling.resume import unsaved_progress_warning

STATE_FILE = "state.json"
VERSION = 1
#: Saved tiles are ``tile.<index>.npy``.
TILE_PREFIX = "tile."


def layout_digest(boxes: Sequence[Box]) -> str:
    return hashlib.sha256(json.dumps([tuple(b) for b in boxes]).encode()).hexdigest()[:16]


class TileResume:
    """The saved tiles of one stage of one run."""

    def __init__(self, folder: Path, fingerprint: str, boxes: Sequence[Box]):
        self.folder, self.fingerprint, self.boxes = Path(folder), fingerprint, tuple(boxes)
        self.failed = False

    @classmethod
    def open(cls, resume_dir: str | Path, stage: str, fingerprint: str,
             boxes: Sequence[Box]) -> tuple["TileResume", Optional[str]]:
        """The stage's state; one of another run is deleted (the warning then says so). Nothing is
        created until the first tile is saved. Raises OSError when old state cannot be removed."""
        state = cls(Path(resume_dir) / stage, fingerprint, boxes)
        try:
            existing = json.loads((state.folder / STATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            existing = None
        except (OSError, ValueError):
            existing = {}
        if existing is None or existing == state._doc():
            return state, None
        shutil.rmtree(state.folder)
        return state, (f"the saved tiles in {state.folder} belong to a different photo or settings; "
                       "starting this stage afresh")

    def _doc(self) -> dict:
        return {"version": VERSION, "fingerprint": self.fingerprint, "boxes": layout_digest(self.boxes)}

    def load(self) -> dict[int, np.ndarray]:
        """{tile index: stored array} of the tiles saved before (unreadable ones are left out)."""
        done = {}
        for path in self.folder.glob(f"{TILE_PREFIX}*.npy"):
            with contextlib.suppress(OSError, ValueError):
                index = int(path.name[len(TILE_PREFIX):-len(".npy")])
                if 0 <= index < len(self.boxes):
                    done[index] = np.load(path, allow_pickle=False)
        return done

    def save(self, index: int, array: np.ndarray) -> Optional[str]:
        """Keep tile ``index``; returns a warning for the log the first time a save fails."""
        if self.failed:
            return None
        try:
            if not (self.folder / STATE_FILE).exists():  # the first tile: the state that lists it
                self.folder.mkdir(parents=True, exist_ok=True)
                with atomic_write(self.folder / STATE_FILE) as handle:
                    handle.write(json.dumps(self._doc()).encode())
            with atomic_write(self.folder / f"{TILE_PREFIX}{index}.npy") as handle:
                np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        except OSError as exc:
            self.failed = True
            return unsaved_progress_warning(self.folder, exc, saved_tiles(self.folder.parent))
        return None


def saved_tiles(resume_dir: str | Path) -> int:
    """How many finished tiles the stage folders of ``resume_dir`` hold (reads only)."""
    count = 0
    with contextlib.suppress(OSError):
        for state in Path(resume_dir).glob(f"*/{STATE_FILE}"):
            count += sum(1 for _ in state.parent.glob(f"{TILE_PREFIX}*.npy"))
    return count
