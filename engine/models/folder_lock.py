"""One change at a time to a models folder, across threads and processes (the app and the CLI
together, or an Import double-clicked): a change holds ``.restorer.lock`` in the folder, a file
lock (``filelock``: flock on POSIX, LockFileEx on Windows) that the system releases when its
process ends, however it ends."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator, Optional, Union

from filelock import FileLock, Timeout

from engine.errors import Cancelled, EngineError

#: The lock file of a models folder.
LOCK_NAME = ".restorer.lock"

_thread_lock = threading.RLock()  # one thread of this process at a time holds a folder's file lock
_folder_locks: dict[str, FileLock] = {}  # one per folder: a second FileLock on one file would wait for the first


@contextlib.contextmanager
def store_lock(directory: Union[str, Path], cancel: Optional[threading.Event] = None) -> Iterator[None]:
    """Held while ``directory`` changes (reentrant). Waits while another process changes it;
    ``cancel`` set meanwhile raises Cancelled. A folder that cannot be made or locked raises
    EngineError saying so."""
    with _thread_lock:
        key = os.path.realpath(directory)
        lock = _folder_locks.get(key)
        if lock is None:
            try:
                Path(key).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EngineError(f"cannot create the models folder {key}: {exc.strerror or exc}") from None
            lock = _folder_locks[key] = FileLock(os.path.join(key, LOCK_NAME), thread_local=False)
        while True:
            try:
                lock.acquire(timeout=0.25)
                break
            except Timeout:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("cancelled while another program was changing the models folder") from None
            except OSError as exc:
                raise EngineError(f"cannot change the models folder {key}: {exc.strerror or exc}") from None
        try:
            yield
        finally:
            lock.release()
