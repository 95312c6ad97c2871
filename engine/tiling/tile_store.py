"""Finished tiles of a blended-tile stage (:mod:`engine.tiling.blended`), kept with a run's resume
state so an interrupted run continues where it stopped.

Layout, in a folder of the resume state (``<resume_dir>/<stage>/``)::

    tiles.json          {"version", "fingerprint", "layout", "tiles": [indices], "result": [H, W] or null}
    tile.<index>.npy    a finished tile's raw output, (h, w, C) uint16
    result.npy          the stage's whole result once it is finished, (H, W, C) uint16

The network's outputs are rounded to 16 bits before they are blended (see
:func:`quantize`), so tiles and results read back from here are exactly what the run computed:
a resumed run gives the same result as one that never stopped. A file is written atomically
before the ``tiles.json`` that lists it; a tile or result that ``tiles.json`` does not list is
never read. State of another request (``fingerprint``) or another tile layout (``layout``: the
boxes, scale and network) is deleted when the store is opened (with a warning for the log). A save
that fails (a full disk) never stops the run: :meth:`TileStore.try_save_tile` returns a warning
once and saves nothing more. How many tiles the stage folders hold counts as finished windows for
the CLI's --resume and the app's Continue (:meth:`engine.tiling.resume.ResumeState.saved_windows`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from engine.atomic_file import atomic_write
from engine.geometry import Box

INDEX_FILE = "tiles.json"
VERSION = 1
LEVELS = 65535.0


def quantize(values: Any) -> Any:
    """Round [0, 1] values (numpy array or torch tensor, float32) to the 16-bit levels they are
    stored with, in place where the type allows."""
    if isinstance(values, np.ndarray):
        np.multiply(values, LEVELS, out=values)
        np.round(values, out=values)
        np.divide(values, np.float32(LEVELS), out=values)
        return values
    return values.mul_(LEVELS).round_().div_(LEVELS)


def to_uint16(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * LEVELS).astype(np.uint16)


def from_uint16(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32) / np.float32(LEVELS)


def layout_digest(boxes: Sequence[Box], *parts: Any) -> str:
    """What the saved tiles depend on besides the request: the tile boxes and e.g. the scale."""
    text = json.dumps([[tuple(b) for b in boxes], [str(p) for p in parts]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TileStore:
    """The saved tiles and result of one stage of one request, in ``directory``."""

    def __init__(self, directory: Path, fingerprint: str, layout: str, tiles: Optional[list[int]] = None,
                 result: Optional[list[int]] = None):
        self.directory = Path(directory)
        self.fingerprint, self.layout = fingerprint, layout
        self.tiles: list[int] = list(tiles or [])
        self.result_shape = result
        self.failed = False

    @classmethod
    def open(cls, directory: str | os.PathLike, fingerprint: str, layout: str) -> tuple["TileStore", Optional[str]]:
        """(store, warning): the store in ``directory`` when it belongs to this request and layout;
        else a new one, what was there being deleted (the warning, for the log, then says so when
        it held finished work). Raises OSError when the folder cannot be made."""
        directory = Path(directory)
        data = None
        try:
            data = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
            if (data.get("version"), data.get("fingerprint"), data.get("layout")) == (VERSION, fingerprint, layout):
                return cls(directory, fingerprint, layout, [int(i) for i in data["tiles"]], data.get("result")), None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        warning = None
        if isinstance(data, dict) and (data.get("tiles") or data.get("result")):
            warning = (f"the saved tiles in {directory} belong to a different photo or settings; "
                       "starting this stage afresh")
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory, fingerprint, layout), warning

    @staticmethod
    def saved_tiles(resume_dir: str | os.PathLike) -> int:
        """Finished tiles (a finished result counts as one) in every stage folder of a resume
        state, whatever request they belong to. Reads only."""
        count = 0
        for index in Path(resume_dir).glob(f"*/{INDEX_FILE}"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                data = json.loads(index.read_text(encoding="utf-8"))
                count += max(len(data["tiles"]), 1 if data.get("result") else 0)
        return count

    # -- reading ------------------------------------------------------------------------------------
    def done_tiles(self) -> dict[int, np.ndarray]:
        """{index: raw output (h, w, C) float32} of the tiles saved; unreadable ones are dropped."""
        out = {}
        for i in self.tiles:
            try:
                out[i] = from_uint16(np.load(self.directory / f"tile.{i}.npy", allow_pickle=False))
            except (OSError, ValueError):
                continue
        return out

    def result(self) -> Optional[np.ndarray]:
        """The finished result (float32), or None."""
        if not self.result_shape:
            return None
        try:
            data = np.load(self.directory / "result.npy", allow_pickle=False)
        except (OSError, ValueError):
            return None
        return from_uint16(data) if list(data.shape[:2]) == list(self.result_shape) else None

    # -- writing ------------------------------------------------------------------------------------
    def _write_index(self) -> None:
        doc = {"version": VERSION, "fingerprint": self.fingerprint, "layout": self.layout, "tiles": self.tiles,
               "result": self.result_shape}
        with atomic_write(self.directory / INDEX_FILE) as handle:
            handle.write(json.dumps(doc, separators=(",", ":")).encode())

    def _save(self, name: str, values: np.ndarray) -> None:
        with atomic_write(self.directory / name) as handle:
            np.save(handle, to_uint16(values), allow_pickle=False)

    def try_save_tile(self, index: int, output: np.ndarray) -> Optional[str]:
        """Save a finished tile; a warning (once) instead of an error when it cannot be written."""
        return self._try(lambda: self._save_tile(index, output))

    def _save_tile(self, index: int, output: np.ndarray) -> None:
        self._save(f"tile.{index}.npy", output)
        self.tiles.append(int(index))
        self._write_index()

    def try_save_result(self, result: np.ndarray) -> Optional[str]:
        """Save the finished result; the tiles are then no longer needed and are deleted."""
        return self._try(lambda: self._save_result(result))

    def _save_result(self, result: np.ndarray) -> None:
        self._save("result.npy", result)
        self.result_shape, tiles, self.tiles = list(result.shape[:2]), self.tiles, []
        self._write_index()
        for i in tiles:
            with contextlib.suppress(OSError):
                (self.directory / f"tile.{i}.npy").unlink()

    def _try(self, save) -> Optional[str]:
        if self.failed:
            return None
        try:
            save()
        except OSError as exc:
            self.failed = True
            return (f"the progress of this stage cannot be saved in {self.directory} ({exc.strerror or exc}); "
                    "the run goes on, but if it stops, this stage starts again")
        return None
