"""The progress the app keeps for its runs, so that Restore continues an interrupted job.

Every run keeps the engine's resume state (:mod:`engine.tiling.resume`: the finished windows,
saved after every wavefront level and when the run stops) in a folder of the user cache, one per
photo: ``<user cache>/Restorer/runs/<sha256 of the photo's pixels>/`` (``$RESTORER_RUNS_DIR``
replaces ``<user cache>/Restorer/runs``).

One folder per photo, not per job: the engine's fingerprint (photo, mask and settings) decides
whether the saved windows belong to the new run. The same photo, mask and settings continue where
they stopped; another mask or other settings start fresh and replace the state, so a photo never
has more than one. The pixels name the folder, not the file: a pasted photo, a renamed or moved
file and a file overwritten with other pixels are all told apart correctly.

* **Kept** after Cancel, an error, closing the app, a crash or a power cut.
* **Removed** when the run finishes: the result is complete.
* **Pruned** when the app starts and when a run starts: states not used for ``MAX_AGE_DAYS``,
  then the least recently used while all of them together take more than ``MAX_TOTAL_BYTES``.
* **In use:** a run holds an OS lock on ``<folder>/lock`` (the system drops it if the process
  dies), and a locked state is never pruned. A new run of the same photo waits while this app's
  cancelled run of it is still stopping (at most one model call); while another run restores it
  (in another Restorer process, or in another window of this one), the new run keeps no progress.
  A finished run deletes the state before it lets go: a run waiting for it then takes the lock
  on a lock file of its own, and the bookkeeping of this process's locks goes by lock, not folder.
* **The mask** of a run that fills a painted mask is kept beside the state (``mask.bits``: one bit
  per pixel), so that the photo opened again after a crash gets it back and the run can continue;
  a run without a mask removes it. The engine's fingerprint still decides what continues.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import time
import weakref
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

import numpy as np

from engine.atomic_file import atomic_write
from engine.events import FinishedEvent, LogEvent
from engine.request import array_digest

RUNS_DIR_ENV = "RESTORER_RUNS_DIR"
LOCK_FILE = "lock"
MASK_FILE = "mask.bits"
#: A state not used for this long is deleted.
MAX_AGE_DAYS = 14
#: All states together may take this much; beyond it the least recently used are deleted.
MAX_TOTAL_BYTES = 10 * 1024**3
#: Seconds between looks while a new run waits for this app's cancelled run of the same photo.
WAIT_POLL_SECONDS = 0.1

#: restore(request, cancel) -> iterator of engine events
RestoreFunction = Callable[[Any, threading.Event], Iterator[Any]]


def runs_root() -> Path:
    """The folder that holds one state folder per photo."""
    env = os.environ.get(RUNS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("Restorer", appauthor=False)) / "runs"


def pixel_digest(image: np.ndarray) -> str:
    """``array_digest(image)``, hashed once per array: the app replaces its photo's pixels, never
    changes them in place. Any thread."""
    with _DIGESTS_GUARD:
        known = _DIGESTS.get(id(image))
        if known is not None and known[0]() is image:
            return known[1]
    digest = array_digest(image)
    with _DIGESTS_GUARD:
        for key in [k for k, (ref, _) in _DIGESTS.items() if ref() is None]:
            del _DIGESTS[key]
        _DIGESTS[id(image)] = (weakref.ref(image), digest)
    return digest


_DIGESTS: dict[int, tuple[weakref.ref, str]] = {}
_DIGESTS_GUARD = threading.Lock()


def state_folder(image: np.ndarray, root: Optional[Path] = None) -> Path:
    """The state folder of the photo with these pixels."""
    return (root or runs_root()) / pixel_digest(image)[:32]


def request_key(request: Any) -> str:
    """A digest of what decides whether a run continues the saved state: equal keys give the
    engine equal fingerprints (:func:`engine.tiling.resume.request_fingerprint`). Cheap: the
    photo's pixels by :func:`pixel_digest`; only ``resume_dir`` and ``batch`` are left out."""
    mask = request.mask
    arrays = request.replace(image=f"pixels:{pixel_digest(request.image)}", resume_dir=None, batch="auto",
                             mask=f"pixels:{array_digest(mask)}" if isinstance(mask, np.ndarray) else mask)
    return hashlib.sha256(arrays.to_json().encode()).hexdigest()


def saved_progress(image: np.ndarray) -> tuple[int, Optional[np.ndarray]]:
    """(finished windows saved for the photo with these pixels, whatever mask and settings they
    were restored with — the engine decides when a run starts; the mask of that run, uint8 0/255
    of the photo's size, or None). Imports torch: not on the GUI thread."""
    from engine.tiling.resume import ResumeState

    folder = state_folder(image)
    windows = ResumeState.saved_windows(folder)
    return windows, (_saved_mask(folder, image.shape[:2]) if windows else None)


# ---- the lock that marks a state in use ----------------------------------------------------
_HELD: set["StateLock"] = set()  # the locks this process holds (by lock: one may be let go as another is taken)
_HELD_GUARD = threading.RLock()


class StateLock:
    """An exclusive OS lock on ``folder/lock``, taken without waiting. It conflicts with every
    other holder, this process included, and the system drops it when the process ends."""

    def __init__(self, folder: Path, handle: BinaryIO, run_cancel: Optional[threading.Event] = None):
        self.folder, self._handle, self.run_cancel = folder, handle, run_cancel

    @classmethod
    def take(cls, folder: Path, run_cancel: Optional[threading.Event] = None) -> Optional["StateLock"]:
        """The lock, or None while another holder has it. ``run_cancel``: the cancel token of the
        run that takes it (None: a moment's holder, such as pruning). Raises OSError if the folder
        cannot be made.

        A holder that deletes the folder does so before letting go (:meth:`remove_folder`): the
        lock then won is on a file no longer in the folder, so it is dropped and taken again on
        the file the folder has now."""
        while True:
            folder.mkdir(parents=True, exist_ok=True)
            with _HELD_GUARD:
                try:
                    handle = open(folder / LOCK_FILE, "a+b")
                except FileNotFoundError:  # the folder was being deleted: make it again
                    continue
                try:
                    _os_lock(handle, True)
                    current = _still_linked(handle, folder / LOCK_FILE)
                except OSError:
                    handle.close()
                    return None
                if not current:
                    _os_lock(handle, False)
                    handle.close()
                    continue
                lock = cls(folder, handle, run_cancel)
                _HELD.add(lock)
                return lock

    def mark_used(self) -> None:
        """Pruning goes by last use: a state being continued is as new as a new one."""
        os.utime(self.folder / LOCK_FILE)

    def release(self) -> None:
        with _HELD_GUARD:
            if not self._handle.closed:
                _os_lock(self._handle, False)
                self._handle.close()
                _HELD.discard(self)

    def remove_folder(self) -> None:
        """Delete the state, then let go (on Windows, let go first: an open file cannot be deleted)."""
        if os.name == "nt":
            self.release()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.release()


def held_here(folder: Path) -> bool:
    """Whether a run of this process holds ``folder``'s lock."""
    with _HELD_GUARD:
        return any(lock.folder == folder for lock in _HELD)


def _stopping_here(folder: Path) -> bool:
    """Whether this process holds ``folder``'s lock, and only for a moment: a cancelled run that
    is still stopping (at most one model call), or pruning. Not while a run of it goes on."""
    with _HELD_GUARD:
        holders = [lock for lock in _HELD if lock.folder == folder]
        return bool(holders) and all(lock.run_cancel is None or lock.run_cancel.is_set() for lock in holders)


def _still_linked(handle: BinaryIO, path: Path) -> bool:
    """Whether the open file ``handle`` is still the one at ``path`` (not deleted meanwhile)."""
    if os.name == "nt":  # an open file cannot be deleted there
        return True
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _os_lock(handle: BinaryIO, lock: bool) -> None:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK if lock else msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), (fcntl.LOCK_EX | fcntl.LOCK_NB) if lock else fcntl.LOCK_UN)


# ---- pruning --------------------------------------------------------------------------------
def _usage(folder: Path) -> tuple[float, int]:
    """(last use: the newest modification time inside, bytes) of a state folder, its stage folders
    (the pre-stage's tiles, engine.tiling.tile_store) included."""
    last, size = folder.stat().st_mtime, 0
    for entry in os.scandir(folder):
        info = entry.stat(follow_symlinks=False)
        if entry.is_dir(follow_symlinks=False):
            inner_last, inner_size = _usage(Path(entry.path))
            last, size = max(last, inner_last), size + inner_size
        else:
            last, size = max(last, info.st_mtime), size + info.st_size
    return last, size


def prune(root: Optional[Path] = None, now: Optional[float] = None) -> list[Path]:
    """Delete the states not used for MAX_AGE_DAYS, then the least recently used ones while all
    together take more than MAX_TOTAL_BYTES. A state in use is never deleted. Returns the deleted
    folders."""
    root = root or runs_root()
    now = time.time() if now is None else now
    states = []
    try:
        for folder in root.iterdir():
            if folder.is_dir():
                states.append((*_usage(folder), folder))
    except OSError:  # no cache folder yet, or one being deleted
        return []
    removed, kept = [], 0
    for used, size, folder in sorted(states, key=lambda s: s[0], reverse=True):  # newest first
        if (now - used > MAX_AGE_DAYS * 86400 or kept + size > MAX_TOTAL_BYTES) and _remove_unless_in_use(folder):
            removed.append(folder)
        else:
            kept += size
    return removed


def _remove_unless_in_use(folder: Path) -> bool:
    try:
        lock = StateLock.take(folder)
    except OSError:
        return False
    if lock is None:
        return False
    lock.remove_folder()
    return True


def prune_in_background() -> None:
    """:func:`prune` in a thread of its own (at start-up: the window does not wait for it)."""
    threading.Thread(target=prune, name="prune-run-states", daemon=True).start()


# ---- runs that keep their progress ----------------------------------------------------------
def keeping_progress(restore: RestoreFunction, root: Optional[Path] = None) -> RestoreFunction:
    """``restore`` with the progress kept in the photo's state folder (see the module's doc).
    It runs where ``restore`` runs: the hashing and the file work stay off the GUI thread."""

    def run(request: Any, cancel: threading.Event) -> Iterator[Any]:
        folder = state_folder(request.image, root)
        try:
            lock = yield from _claim(folder, cancel)
        except OSError as exc:
            lock = None
            yield LogEvent("warning", f"the progress of this run cannot be kept ({exc}): if it stops, "
                                      "the next run starts from the beginning")
        else:
            if lock is None and not cancel.is_set():
                yield LogEvent("warning", "another Restorer window is restoring this photo: the progress of "
                                          "this run is not kept if it stops")
        if lock is None:
            if not cancel.is_set():
                yield from restore(request, cancel)
            return
        lock.mark_used()
        complete = False
        events = restore(request.replace(resume_dir=str(folder)), cancel)
        try:
            _keep_mask(folder, request.mask)
            prune(root)
            for event in events:
                yield event
                if isinstance(event, FinishedEvent):
                    complete = not cancel.is_set()  # set: the app may have dropped the result
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # the engine saves the windows finished so far before the lock goes
            (lock.remove_folder if complete else lock.release)()

    return run


def _keep_mask(folder: Path, mask: Any) -> None:
    """Keep the run's mask (the app's: uint8, 255 = fill) beside its state; none for a run without."""
    path = folder / MASK_FILE
    with contextlib.suppress(OSError):  # a convenience: the engine says when the state cannot be written
        if isinstance(mask, np.ndarray) and mask.dtype == np.uint8:
            with atomic_write(path) as handle:
                np.save(handle, np.packbits(mask > 127, axis=-1), allow_pickle=False)
        else:
            path.unlink(missing_ok=True)


def _saved_mask(folder: Path, size: tuple[int, int]) -> Optional[np.ndarray]:
    try:
        packed = np.load(folder / MASK_FILE, allow_pickle=False)
        if packed.dtype != np.uint8 or packed.shape != (size[0], -(-size[1] // 8)):
            return None
        return np.unpackbits(packed, axis=-1, count=size[1]) * np.uint8(255)
    except (OSError, ValueError):
        return None


def _claim(folder: Path, cancel: threading.Event) -> Iterator[LogEvent]:
    """``lock = yield from _claim(...)``: the folder's lock, after waiting while a cancelled run of
    this process still holds it; None when a run goes on holding it (in another process, or in
    another window of this one), or on cancel."""
    lock = StateLock.take(folder, cancel)
    told = False
    while lock is None and _stopping_here(folder) and not cancel.is_set():
        if not told:
            yield LogEvent("info", "waiting for the cancelled restoration of this photo to stop")
            told = True
        cancel.wait(WAIT_POLL_SECONDS)
        lock = StateLock.take(folder, cancel)
    if lock is None and not cancel.is_set():
        lock = StateLock.take(folder, cancel)  # it may have stopped between the two looks
    return lock
