"""Writing a file so that it is never seen half-written: the one place the engine does this.

``atomic_write(path)`` hands out a binary file beside ``path`` under a temporary name, flushes it
to disk and renames it over ``path`` only when the ``with`` block completes. On any error the
temporary file is removed and ``path`` is untouched; a write that stopped short on a full disk
raises the system's "No space left on device" (numpy and tifffile do not say why).

The result has the permissions a plain ``open(path, "wb")`` would give it: a new file gets
0666 minus the umask (the temporary file is created with that mode, so the system applies the
umask), and a file that is replaced keeps its own mode.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator, Union

#: Mode of a new file before the umask, as for ``open(path, "w")``.
NEW_FILE_MODE = 0o666


@contextlib.contextmanager
def atomic_write(path: Union[str, os.PathLike]) -> Iterator[BinaryIO]:
    """``with atomic_write(path) as handle: handle.write(...)`` — ``path`` appears complete or not
    at all. The parent folder is created when missing."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file where a folder of the path should be
        blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), path.parent)
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is a file, not a folder", str(path)) from None
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), NEW_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _keep_mode_of(path, tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        full = _short_write_on_a_full_disk(exc, path.parent)  # asked before the temporary file frees its space
        tmp.unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise


#: Free space below which a short write is put down to a full disk.
FULL_DISK_BYTES = 1 << 20


def _short_write_on_a_full_disk(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc`` is a write that stopped short without the system's reason (numpy's and
    tifffile's ``tofile`` say only "N requested and M written") on a disk that is now full: its
    message is then the system's own, "No space left on device"."""
    if not isinstance(exc, OSError) or exc.errno is not None:
        return False
    try:
        return shutil.disk_usage(folder).free < FULL_DISK_BYTES
    except OSError:
        return False


def _keep_mode_of(path: Path, tmp: Path) -> None:
    """Give ``tmp`` the permission bits of the file it is about to replace, if there is one."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    os.chmod(tmp, mode)
