"""Interrupted-job state kept next to the output, so a run can continue from its finished windows.

Layout of ``resume_dir``::

    state.json        {"version", "fingerprint", "stages": {name: {"finished": [...], "shape": [H, W]}}}
    <stage>.npy       the stage's canvas, uint16 (H, W, 3)

Both are written atomically (:func:`engine.atomic_file.atomic_write`) after every finished level,
and when a run is cancelled or its events are no longer read (the generator is closed). The
fingerprint covers everything that changes the result (the request minus ``resume_dir``,
``batch`` and ``device`` — batching does not change the result — plus the hash of the loaded
image and mask pixels).

**Mismatch policy:** state whose fingerprint differs from the new request is NOT resumed: the run
starts fresh (the old state is overwritten as the new run progresses: its first save also removes
the canvases of stages the new run does not have) and a warning LogEvent says so. A corrupt state
file is treated the same way.

With ``quirks.carry_state_across_windows`` the first window after a resume starts from fresh
noise (the carried sample is not stored), so that parity mode is not bit-exact across a resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from engine.atomic_file import atomic_write
from engine.geometry import Box
from engine.tiling.canvas import Canvas

STATE_FILE = "state.json"
VERSION = 1
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


class ResumeState:
    """Per-stage canvases and finished windows of one job, in ``directory``."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str, stages: Optional[dict] = None):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.stages: dict[str, dict[str, Any]] = stages or {}

    @classmethod
    def open(cls, directory: str | os.PathLike, fingerprint: str) -> tuple["ResumeState", Optional[str]]:
        """Load the state in ``directory`` if it belongs to this fingerprint.

        Returns (state, warning): warning is a message for a LogEvent when existing state was
        ignored (other request, unreadable), else None.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / STATE_FILE
        if not path.exists():
            return cls(directory, fingerprint), None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return cls(directory, fingerprint), f"resume state in {directory} is unreadable ({exc}); starting fresh"
        if data.get("version") != VERSION or data.get("fingerprint") != fingerprint:
            return cls(directory, fingerprint), (
                f"resume state in {directory} belongs to a different request (image, mask or settings "
                "changed); starting fresh and replacing it"
            )
        return cls(directory, fingerprint, dict(data.get("stages", {}))), None

    @classmethod
    def saved_windows(cls, directory: str | os.PathLike) -> int:
        """How many finished windows the state in ``directory`` holds, whatever request it belongs
        to (0 when there is no readable state). Reads only; creates nothing."""
        try:
            data = json.loads((Path(directory) / STATE_FILE).read_text(encoding="utf-8"))
            return cls(directory, "", dict(data.get("stages", {}))).resumed_windows
        except (OSError, ValueError, AttributeError, TypeError):
            return 0

    @property
    def resumed_windows(self) -> int:
        return sum(len(s.get("finished", [])) for s in self.stages.values())

    def load_stage(self, name: str, height: int, width: int, boxes: tuple[Box, ...]) -> tuple[Canvas, set[int]]:
        """The stage's saved canvas and finished window indices, or a fresh canvas and none."""
        info = self.stages.get(name)
        if not info or list(info.get("shape", [])) != [height, width]:
            return Canvas(height, width), set()
        try:
            pixels = np.load(self.directory / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError):
            return Canvas(height, width), set()
        finished = {int(i) for i in info.get("finished", []) if 0 <= int(i) < len(boxes)}
        written = np.zeros((height, width), bool)
        for i in finished:
            rows, cols = boxes[i].slices()
            written[rows, cols] = True
        return Canvas(height, width, pixels=pixels, written=written), finished

    def save_stage(self, name: str, canvas: Canvas, finished: set[int]) -> None:
        """Write the stage's canvas, then the JSON that points to it (both atomic)."""
        with atomic_write(self.directory / f"{name}.npy") as handle:
            np.save(handle, canvas.pixels, allow_pickle=False)
        self.stages[name] = {"finished": sorted(finished), "shape": [canvas.height, canvas.width]}
        doc = {"version": VERSION, "fingerprint": self.fingerprint, "stages": self.stages}
        with atomic_write(self.directory / STATE_FILE) as handle:
            handle.write(json.dumps(doc, indent=1).encode())
        for stale in self.directory.glob("*.npy"):  # canvases of the replaced request's other stages
            if stale.stem not in self.stages:
                stale.unlink(missing_ok=True)
