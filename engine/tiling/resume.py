"""Interrupted-job state kept next to the output, so a run can continue from its finished windows.

Layout of ``resume_dir``::

    state.json        {"version", "fingerprint", "stages": {name: {"shape": [H, W], "boxes": digest,
                       "finished": [window indices, in the order they were saved],
                       "patches": [[number, how many of the next finished windows it holds], ...]}}}
    <stage>.<number>.npy   a patch: (N, 3) uint16, the canvas pixels its windows added

**A save writes what changed.** The stage saves after every finished level, and when a run is
cancelled or its events are no longer read (the generator is closed). A save writes one new patch
with the pixels of the windows finished since the previous save, then the state.json that lists
it. Each canvas pixel is stored once: a window's share of a patch is the part of its box that no
window listed before it covers (:class:`_Claims`). A save costs 6 bytes per new pixel plus the
JSON, so a run writes its canvas about once instead of once per level (a 100-megapixel result
over 150 levels: about 0.6 GB instead of 90 GB).

**Crash safety: nothing state.json lists is ever written again.** A patch gets a number no listed
patch has and is written atomically (:func:`engine.atomic_file.atomic_write`) before the
state.json that lists it, which replaces the old one atomically (the folder is synced in between,
so the patch's new name cannot be lost while the state.json naming it is kept). A crash or a failed write at any
moment leaves the previous state.json and every patch it lists as they were; at most an unlisted
patch or a temporary file is left over, which the next save deletes (a save removes every ``.npy``
state.json does not list). Not one canvas file updated in place: a window's new pixels share disk
blocks with pixels of finished windows beside them, so a crash while those blocks are written
could damage saved pixels; patches never touch a byte that is listed. The saved pixels are final:
once written, a canvas pixel never changes (``Canvas.write`` fills only unwritten pixels), and a
finished window's whole box is written. Loading replays the patches in order with the same
claims, giving back the canvas and the written map exactly; a stage is loaded only on the window
layout it was saved on (its shape and a digest of its boxes). A patch that is missing or damaged
(a disk error, a file deleted by hand) ends the replay there: the windows of the patches before it
are resumed, the rest are restored again, and :attr:`ResumeState.warnings` says so.

**A state that cannot be written never stops the run:** :meth:`ResumeState.try_save` returns a
warning for the log the first time a save fails (full disk, read-only or removed folder) and saves
nothing more; what is on disk is the last save that succeeded.

The fingerprint covers everything that changes the result (the request minus ``resume_dir``,
``batch`` and ``device`` — batching does not change the result — plus the hash of the loaded
image and mask pixels).

**Mismatch policy:** state whose fingerprint or version differs from the new run's is NOT resumed:
its state.json is removed at once (so its patches can never be listed with the new run's), the
run starts fresh, its first save deletes the old patches, and a warning LogEvent says so. A
corrupt state file is treated the same way.

With ``quirks.carry_state_across_windows`` the first window after a resume starts from fresh
noise (the carried sample is not stored), so that parity mode is not bit-exact across a resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from engine.atomic_file import atomic_write
from engine.geometry import Box
from engine.tiling.canvas import Canvas

STATE_FILE = "state.json"
#: 1: the whole canvas rewritten at every save; 2: patches of the pixels added since the last save.
VERSION = 2
#: Request fields that do not change the result.
NON_SEMANTIC_FIELDS = ("resume_dir", "batch", "device")


def request_fingerprint(request_dict: dict[str, Any], *arrays: Optional[np.ndarray]) -> str:
    """sha256 over the request's semantic fields and the given pixel arrays."""
    semantic = {k: v for k, v in request_dict.items() if k not in NON_SEMANTIC_FIELDS}
    digest = hashlib.sha256(json.dumps(semantic, sort_keys=True, default=str).encode())
    for arr in arrays:
        if arr is not None:
            a = np.ascontiguousarray(arr)
            digest.update(f"{a.shape}{a.dtype}".encode())
            digest.update(a.data)  # the array's own buffer: no full-size bytes copy
    return digest.hexdigest()


def unsaved_progress_warning(directory: str | os.PathLike, exc: OSError, saved: int = 0) -> str:
    """The log line for progress that cannot be written: the run goes on all the same."""
    after = (f"a new run continues from the {saved} window(s) saved before" if saved
             else "a new run starts from the beginning")
    return (f"the progress of this run cannot be saved in {directory} ({exc.strerror or exc}); the run goes "
            f"on, but if it stops, {after}")


class _Claims:
    """Which pixels of a window's box its share of a patch holds: those no window listed before it
    covers. Saving and loading list the same windows in the same order, so they agree on each."""

    def __init__(self, boxes: Sequence[Box]):
        self.boxes = tuple(boxes)
        self._edges = np.array([(b.top, b.left, b.bottom, b.right) for b in boxes], np.int64).reshape(-1, 4)
        self.listed = np.zeros(len(boxes), bool)

    def masks(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The claims (box-sized bool masks) of ``indices`` listed next, in order; nothing is
        listed until :meth:`commit`."""
        listed, edges, out = self.listed.copy(), self._edges, []
        for i in indices:
            top, left, bottom, right = edges[i]
            mask = np.ones((bottom - top, right - left), bool)
            hits = listed & (edges[:, 0] < bottom) & (edges[:, 2] > top) & (edges[:, 1] < right) & (edges[:, 3] > left)
            for t, l, b, r in edges[hits]:
                mask[max(t, top) - top : min(b, bottom) - top, max(l, left) - left : min(r, right) - left] = False
            listed[i] = True
            out.append(mask)
        return out

    def commit(self, indices: Iterable[int]) -> None:
        self.listed[list(indices)] = True


class ResumeState:
    """Per-stage patches and finished windows of one job, in ``directory``."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str, stages: Optional[dict] = None):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.stages: dict[str, dict[str, Any]] = stages or {}  # as state.json on disk says
        self._claims: dict[str, _Claims] = {}  # stages loaded or saved by this run
        numbers = [int(n) for info in self.stages.values() for n, _ in info.get("patches", [])]
        self._next = max(numbers, default=-1) + 1  # no listed patch has this number or a higher one
        self.failed = False  # a save failed: try_save saves nothing more
        self.warnings: list[str] = []  # saved windows that could not be loaded (damaged or missing patches)
        self.replaced = False  # open() dropped the state of another request (and said so)

    @classmethod
    def open(cls, directory: str | os.PathLike, fingerprint: str) -> tuple["ResumeState", Optional[str]]:
        """Load the state in ``directory`` if it belongs to this fingerprint.

        Returns (state, warning): warning is a message for a LogEvent when existing state was
        ignored (other request or version, unreadable; its state.json is removed), else None.
        Raises OSError when old state cannot be removed. The folder is made by the first save.
        """
        directory = Path(directory)
        path = directory / STATE_FILE
        if not path.exists():
            return cls(directory, fingerprint), None
        try:
            data = _read(directory)
            state = cls(directory, fingerprint, data["stages"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warning = f"resume state in {directory} is unreadable ({exc}); starting fresh"
        else:
            if data.get("version") != VERSION:
                warning = (f"resume state in {directory} was saved by another version of Restorer and cannot "
                           "be continued; starting fresh and replacing it")
            elif data.get("fingerprint") != fingerprint:
                warning = (f"resume state in {directory} belongs to a different request (image, mask or settings "
                           "changed); starting fresh and replacing it")
            else:
                return state, None
        path.unlink(missing_ok=True)  # its patches are never listed again: the next save deletes them
        state = cls(directory, fingerprint)
        state.replaced = True
        return state, warning

    @classmethod
    def saved_windows(cls, directory: str | os.PathLike) -> int:
        """How many finished windows the state in ``directory`` holds, whatever request it belongs
        to (0 when there is no readable state of this version), with the finished tiles of its
        blended-tile stages (:mod:`engine.tiling.tile_store`). Reads only; creates nothing."""
        from engine.tiling.tile_store import TileStore

        tiles = TileStore.saved_tiles(directory)
        try:
            data = _read(Path(directory))
            return tiles + (cls(directory, "", dict(data["stages"])).resumed_windows if data.get("version") == VERSION else 0)
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            return tiles

    @property
    def resumed_windows(self) -> int:
        return sum(len(s.get("finished", [])) for s in self.stages.values())

    # -- loading ------------------------------------------------------------------------------------
    def load_stage(self, name: str, height: int, width: int, boxes: tuple[Box, ...]) -> tuple[Canvas, set[int]]:
        """The stage's saved canvas and finished window indices, or a fresh canvas and none (its
        saved patches are then dropped by the next save)."""
        info = self.stages.get(name)
        if info and list(info.get("shape", [])) == [height, width] and info.get("boxes") == _digest(boxes):
            canvas, claims = Canvas(height, width), _Claims(boxes)
            try:
                finished = self._replay(name, info, canvas, claims)
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                self._lost(len(info.get("finished", [])), STATE_FILE, exc)
            else:
                self._claims[name] = claims
                return canvas, finished
        self.stages.pop(name, None)
        self._claims[name] = _Claims(boxes)
        return Canvas(height, width), set()

    def _lost(self, windows: int, file_name: str, exc: BaseException) -> None:
        """Say that ``windows`` saved windows could not be loaded because of ``file_name``, and why."""
        reason = "is missing" if isinstance(exc, FileNotFoundError) else f"is damaged: {exc}"
        self.warnings.append(f"{windows} saved window(s) in {self.directory} could not be read ({file_name} {reason}); "
                             "they are restored again")

    def _replay(self, name: str, info: dict[str, Any], canvas: Canvas, claims: _Claims) -> set[int]:
        """The saved windows of stage ``name`` onto ``canvas``, patch by patch. A patch that is
        missing or damaged ends the replay: the windows of the patches before it are kept (the
        stage's listing is cut there, so the next save rewrites the rest) and a warning says so."""
        order = [int(i) for i in info["finished"]]
        if len(set(order)) != len(order) or not all(0 <= i < len(claims.boxes) for i in order):
            raise ValueError("bad window list")
        start = 0
        for k, (number, count) in enumerate(info["patches"]):
            windows = order[start : start + int(count)]
            masks = claims.masks(windows)
            try:
                data = np.load(self.directory / _patch_name(name, number), allow_pickle=False)
                if data.dtype != np.uint16 or data.shape != (sum(int(m.sum()) for m in masks), 3):
                    raise ValueError(f"patch {number} does not match its windows")
            except (OSError, ValueError, EOFError) as exc:
                self._lost(len(order) - start, _patch_name(name, number), exc)
                self.stages[name] = {**info, "finished": order[:start], "patches": info["patches"][:k]}
                return set(order[:start])
            start += int(count)
            offset = 0
            for i, mask in zip(windows, masks):
                rows, cols = claims.boxes[i].slices()
                size = int(mask.sum())
                canvas.pixels[rows, cols][mask] = data[offset : offset + size]
                canvas.written[rows, cols] = True
                offset += size
            claims.commit(windows)
        if start != len(order):
            raise ValueError("windows missing from the patches")
        return set(order)

    # -- saving -------------------------------------------------------------------------------------
    def save_stage(self, name: str, canvas: Canvas, finished: set[int], boxes: Sequence[Box]) -> None:
        """Write the windows of ``finished`` not saved yet as a new patch, then the state.json that
        lists it (both atomic). A stage not loaded with :meth:`load_stage` starts afresh."""
        claims = self._claims.get(name)
        if claims is None or claims.boxes != tuple(boxes):
            claims = self._claims[name] = _Claims(boxes)
            self.stages.pop(name, None)
        info = self.stages.get(name) or {"shape": [canvas.height, canvas.width], "boxes": _digest(boxes),
                                         "finished": [], "patches": []}
        new = sorted(set(finished) - set(info["finished"]))
        if not new:
            return
        parts = []
        for i, mask in zip(new, claims.masks(new)):
            rows, cols = boxes[i].slices()
            parts.append(canvas.pixels[rows, cols][mask])
        with atomic_write(self.directory / _patch_name(name, self._next)) as handle:
            np.save(handle, np.concatenate(parts), allow_pickle=False)
        _sync_folder(self.directory)  # the patch's name is on disk before a state.json names it
        info = {**info, "finished": info["finished"] + new, "patches": info["patches"] + [[self._next, len(new)]]}
        stages = {**self.stages, name: info}
        doc = {"version": VERSION, "fingerprint": self.fingerprint, "stages": stages}
        with atomic_write(self.directory / STATE_FILE) as handle:
            handle.write(json.dumps(doc, separators=(",", ":")).encode())
        self.stages, self._next = stages, self._next + 1
        claims.commit(new)
        self._remove_unlisted()

    def try_save(self, name: str, canvas: Canvas, finished: set[int], boxes: Sequence[Box]) -> Optional[str]:
        """:meth:`save_stage`, except that a failed write does not stop the run: the first failure
        returns a warning for the log, and from then on nothing is saved."""
        if self.failed:
            return None
        try:
            self.save_stage(name, canvas, finished, boxes)
        except OSError as exc:
            self.failed = True
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # a folder the failed save made, left empty: not kept as if it held work
            return unsaved_progress_warning(self.directory, exc, self.resumed_windows)
        return None

    def _remove_unlisted(self) -> None:
        """Patches of replaced requests, stages or versions, any left by a failed save, and the
        temporary files of writes a crash interrupted."""
        listed = {_patch_name(name, n) for name, info in self.stages.items() for n, _ in info["patches"]}
        with contextlib.suppress(OSError):  # what is left over is only disk space
            for path in [*self.directory.glob("*.npy"), *self.directory.glob(".*.tmp")]:
                if path.name not in listed:
                    path.unlink(missing_ok=True)


def _patch_name(stage: str, number: int) -> str:
    return f"{stage}.{int(number)}.npy"


def _sync_folder(directory: Path) -> None:
    """Make the renames done in ``directory`` durable (POSIX; Windows cannot open a folder). Where
    the file system refuses it (some network ones), the renames are as durable as it makes them."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _digest(boxes: Sequence[Box]) -> str:
    """The window layout the claims depend on: patches saved on another one are not loaded."""
    return hashlib.sha256(json.dumps([tuple(b) for b in boxes]).encode()).hexdigest()[:16]


def _read(directory: Path) -> dict[str, Any]:
    data = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data["stages"], dict):
        raise ValueError("not a resume state")
    return data
