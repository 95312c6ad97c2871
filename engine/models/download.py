"""Verified, resumable downloads (stdlib only, Qt-free; used by the CLI and the GUI worker).

``download_file`` writes ``<dest>.part``, resumes it with ``Range: bytes=N-`` (the existing part
is re-hashed so the sha256 covers the whole file), retries transient failures with exponential
back-off, gives up on a stall (no bytes for ``stall_timeout`` s), checks free disk space first,
and moves the file into place atomically only after its size and hash check out. Proxies come
from the environment / system settings through urllib's default ``ProxyHandler``.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from engine.errors import Cancelled, EngineError

USER_AGENT = "Restorer-model-downloader/1"
DISK_MARGIN = 64 * 2**20  # keep this much free beyond the file itself
PROGRESS_INTERVAL = 0.1  # seconds between progress callbacks
#: How a NetworkError's message says to set a mirror (the CLI's way); the app says its own way
#: instead (gui.models.dialog replaces this phrase).
MIRROR_HOW = "--mirror / RESTORER_MODEL_MIRROR"


class DownloadError(EngineError):
    """A download failed; the message says why and what to do."""


class NetworkError(DownloadError):
    """The server could not be reached, or the connection kept failing."""


class StallError(NetworkError):
    """No bytes arrived for longer than the stall timeout."""


class NotFoundError(DownloadError):
    """The server answered 404/410: the file is not at that address."""


class HashMismatchError(DownloadError):
    """The downloaded bytes do not have the expected sha256; nothing was installed."""


class DiskSpaceError(DownloadError):
    """Not enough free disk space (checked up front, or the disk filled up while writing)."""


class DownloadCancelled(DownloadError, Cancelled):
    """The user cancelled; the ``.part`` file is kept so the next run resumes."""


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes done (including a resumed part) of ``total`` (None if the server does not say)."""

    file_name: str
    done: int
    total: Optional[int]
    speed: float  # bytes/s over this session
    eta: Optional[float]  # seconds left, None if unknown
    url: str = ""


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    sha256: str
    size: int
    url: str
    resumed_from: int  # bytes already on disk when this call started


ProgressCallback = Callable[[DownloadProgress], None]


def _human(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def apply_mirror(url: str, mirror: Optional[str], file_name: str) -> Optional[str]:
    """Rewrite ``url`` for a mirror setting; None when the mirror does not apply.

    ``mirror`` is either ``OLD_PREFIX=NEW_PREFIX`` (scheme+host+path prefix replaced) or a base
    URL, to which the file name is appended (``https://mirror.example/models/`` + file).
    """
    if not mirror:
        return None
    if "=" in mirror and not mirror.startswith("="):
        old, new = mirror.split("=", 1)
        return new + url[len(old):] if url.startswith(old) else None
    return mirror.rstrip("/") + "/" + file_name


def candidate_urls(urls: Sequence[str], file_name: str, mirror: Optional[str] = None) -> list[str]:
    """Mirror addresses first (argument, else env ``RESTORER_MODEL_MIRROR``), then the originals."""
    mirror = mirror if mirror is not None else os.environ.get("RESTORER_MODEL_MIRROR") or None
    out: list[str] = []
    if mirror:
        for url in list(urls) or [""]:
            rewritten = apply_mirror(url, mirror, file_name)
            if rewritten and rewritten not in out:
                out.append(rewritten)
    out.extend(u for u in urls if u not in out)
    return out


def check_free_space(directory: Path, needed: int, disk_usage=shutil.disk_usage) -> None:
    """Raise DiskSpaceError unless ``needed`` bytes (+ a margin) are free in ``directory``."""
    free = disk_usage(directory).free
    if needed + DISK_MARGIN > free:
        raise DiskSpaceError(
            f"not enough disk space in {directory}: needs {_human(needed + DISK_MARGIN)} free, "
            f"{_human(free)} available — free some space or choose another models folder"
        )


def sha256_file(path: Path, progress: Optional[Callable[[int, int], None]] = None,
                cancel: Optional[threading.Event] = None, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks; ``progress(done, total)`` after each chunk."""
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as f:
        while True:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("hashing cancelled")
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return h.hexdigest()


class _Restart(Exception):
    """The server ignored or refused our range: start the file again from byte 0."""


def _is_transient_http(code: int) -> bool:
    return code in (408, 425, 429) or 500 <= code < 600


def _describe_unreachable(url: str, exc: BaseException) -> str:
    host = urllib.request.urlparse(url).netloc
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        what = "the name could not be resolved (no network, or DNS blocked)"
    elif isinstance(reason, ConnectionRefusedError):
        what = "the connection was refused"
    else:
        what = str(reason) or type(reason).__name__
    return (f"cannot reach {host}: {what} — check the internet connection or proxy, set a mirror "
            f"({MIRROR_HOW}), or download the file by hand and import it")


class _Transfer:
    """State of one file download across attempts and URLs."""

    def __init__(self, dest: Path, total_hint: Optional[int], progress: Optional[ProgressCallback],
                 cancel: Optional[threading.Event], stall_timeout: float, chunk_size: int, opener,
                 disk_usage=shutil.disk_usage):
        self.dest = dest
        self.part = dest.with_name(dest.name + ".part")
        self.total = total_hint
        self.progress = progress
        self.cancel = cancel
        self.stall_timeout = stall_timeout
        self.chunk_size = chunk_size
        self.opener = opener
        self.disk_usage = disk_usage
        self.hasher = hashlib.sha256()
        self.done = 0
        self.session_start = time.monotonic()
        self.session_bytes = 0
        self.last_report = 0.0

    def load_existing_part(self) -> None:
        """Re-hash what an earlier run left, so the final digest covers the whole file."""
        self.hasher = hashlib.sha256()
        self.done = 0
        if self.part.is_file():
            with open(self.part, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    self.hasher.update(block)
                    self.done += len(block)

    def discard_part(self) -> None:
        self.part.unlink(missing_ok=True)
        self.hasher = hashlib.sha256()
        self.done = 0

    def report(self, url: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self.last_report < PROGRESS_INTERVAL):
            return
        self.last_report = now
        elapsed = max(now - self.session_start, 1e-6)
        speed = self.session_bytes / elapsed
        eta = (self.total - self.done) / speed if (self.total and speed > 0) else None
        self.progress(DownloadProgress(self.dest.name, self.done, self.total, speed, eta, url))

    def attempt(self, url: str) -> None:
        """One HTTP request; appends to the part file. Raises on any failure."""
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if self.done > 0:
            headers["Range"] = f"bytes={self.done}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = self.opener.open(request, timeout=self.stall_timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and self.done > 0:
                total = exc.headers.get("Content-Range", "").rpartition("/")[2]
                if total.isdigit() and int(total) == self.done:
                    self.total = self.done  # the part is already complete
                    return
                raise _Restart() from exc
            raise
        with response:
            status = response.status
            length = response.headers.get("Content-Length")
            if status == 206:
                content_range = response.headers.get("Content-Range", "")
                start = content_range.split(" ")[-1].split("-")[0]
                if not start.isdigit() or int(start) != self.done:
                    raise _Restart()
                size = content_range.rpartition("/")[2]
                if size.isdigit():
                    self.total = int(size)
            else:
                if self.done > 0:  # server ignored Range: start over
                    self.discard_part()
                if length and length.isdigit():
                    self.total = int(length)
            if self.total is not None:
                check_free_space(self.part.parent, self.total - self.done, self.disk_usage)
            self._copy_body(response, url)
        if self.total is not None and self.done != self.total:
            raise http.client.IncompleteRead(b"", self.total - self.done)

    def _copy_body(self, response, url: str) -> None:
        mode = "ab" if self.done > 0 else "wb"
        try:
            with open(self.part, mode) as out:
                while True:
                    if self.cancel is not None and self.cancel.is_set():
                        raise DownloadCancelled(
                            f"download of {self.dest.name} cancelled — {_human(self.done)} kept; "
                            "start it again to resume"
                        )
                    block = response.read(self.chunk_size)
                    if not block:
                        break
                    out.write(block)
                    self.hasher.update(block)
                    self.done += len(block)
                    self.session_bytes += len(block)
                    self.report(url)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                raise DiskSpaceError(f"the disk filled up while downloading {self.dest.name}; "
                                     "free some space and start again to resume") from exc
            raise
        finally:
            self.report(url, force=True)


def download_file(
    urls: Sequence[str],
    dest: Path,
    *,
    expected_sha256: Optional[str] = None,
    expected_size: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    retries: int = 4,
    backoff: float = 1.0,
    stall_timeout: float = 30.0,
    chunk_size: int = 1 << 16,
    opener: Optional[urllib.request.OpenerDirector] = None,
    disk_usage=shutil.disk_usage,
) -> DownloadResult:
    """Download the first working URL to ``dest``; verify; move into place atomically.

    ``expected_size`` (if known) is used for the up-front free-space check. On a hash mismatch
    the downloaded bytes are deleted and HashMismatchError is raised; on cancel the ``.part``
    stays for the next call to resume. ``retries`` counts consecutive failed attempts without
    progress per URL; the wait doubles each time starting at ``backoff`` seconds.
    """
    if not urls:
        raise DownloadError(f"there is no download address for {dest.name}; get the file by hand and import it")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the server's Content-Length/Content-Range is authoritative; expected_size may be an estimate
    transfer = _Transfer(dest, None, progress, cancel, stall_timeout, chunk_size,
                         opener or urllib.request.build_opener(), disk_usage)
    transfer.load_existing_part()
    resumed_from = transfer.done
    if expected_size:
        check_free_space(dest.parent, max(expected_size - transfer.done, 0), disk_usage)
    errors: list[DownloadError] = []
    for url in urls:
        error = _try_url(transfer, url, retries, backoff)
        if error is None:
            return _finish(transfer, url, expected_sha256, resumed_from)
        errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    raise type(errors[-1])("; ".join(str(e) for e in errors))


def _try_url(transfer: _Transfer, url: str, retries: int, backoff: float) -> Optional[DownloadError]:
    """Attempts against one URL until done (None) or a permanent/exhausted failure (the error)."""
    name, cancel = transfer.dest.name, transfer.cancel
    failures = 0
    while True:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(f"download of {name} cancelled — start it again to resume")
        before = transfer.done
        try:
            transfer.attempt(url)
            return None
        except _Restart:
            transfer.discard_part()
            continue
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                return NotFoundError(f"{name} was not found at {url} (HTTP {exc.code})")
            if not _is_transient_http(exc.code):
                return DownloadError(f"the server refused {url}: HTTP {exc.code} {exc.reason}")
            error: DownloadError = NetworkError(f"the server kept failing for {url} (HTTP {exc.code})")
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
                return NetworkError(_describe_unreachable(url, exc))
            if isinstance(reason, TimeoutError):
                error = StallError(f"no answer from {url} for {transfer.stall_timeout:g} s")
            else:
                error = NetworkError(_describe_unreachable(url, exc))
        except TimeoutError:
            error = StallError(f"the download of {name} stalled: no data for {transfer.stall_timeout:g} s")
        except (http.client.HTTPException, OSError) as exc:
            error = NetworkError(f"the connection to {url} kept breaking ({type(exc).__name__}: {exc})")
        failures = 0 if transfer.done > before else failures + 1
        if failures > retries:
            return error
        if failures:
            wait_time = backoff * 2 ** (failures - 1)
            if cancel is not None:
                cancel.wait(wait_time)
            else:
                time.sleep(wait_time)


def _finish(transfer: _Transfer, url: str, expected_sha256: Optional[str], resumed_from: int) -> DownloadResult:
    digest = transfer.hasher.hexdigest()
    if expected_sha256 and digest != expected_sha256.lower():
        transfer.discard_part()
        raise HashMismatchError(
            f"{transfer.dest.name} from {url} is damaged or not the expected file (sha256 {digest[:12]}… "
            f"instead of {expected_sha256[:12]}…); it was deleted — try again or use another mirror"
        )
    if not transfer.part.exists():  # zero-byte file
        transfer.part.touch()
    with open(transfer.part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(transfer.part, transfer.dest)
    return DownloadResult(transfer.dest, digest, transfer.done, url, resumed_from)
