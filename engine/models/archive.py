"""Models published only inside an archive: download the archive, take one member out.

The archive is downloaded like any model file (:func:`engine.models.download.download_file`:
``<file>.archive.part`` resumed with HTTP ranges, retries, free-space check, moved into place when
its size is complete) but has no hash of its own to check: archives are large, hold much else, and
their publishers give no hash. What is verified is the extracted file: the zip's CRC-32 while it
is read, then its sha256 against the catalog's pinned hash or the one recorded on first download
(``hash_policy``), exactly as for a file downloaded directly. The member is written to
``<file>.part`` and moved into place only after those checks; the archive is deleted then. A
complete archive left by an interrupted extraction is reused, not downloaded again.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zipfile
from pathlib import Path
from typing import Optional, Sequence

from engine.models import download as dl
from engine.models.catalog import ARCHIVE_SUFFIX, PART_SUFFIX


def _member(archive: zipfile.ZipFile, member: str, source: str) -> zipfile.ZipInfo:
    """The archive's entry ``member``, or the only entry whose path ends with it (a top folder)."""
    names = [info for info in archive.infolist() if not info.is_dir()]
    exact = [info for info in names if info.filename == member]
    tail = [info for info in names if info.filename.endswith("/" + member)]
    found = exact or tail
    if len(found) != 1:
        raise dl.DownloadError(f"{source} does not hold {member} (it has {len(names)} files); the published "
                               "archive may have changed: get the file by hand and import it")
    return found[0]


def extract_member(archive_path: Path, member: str, dest: Path, *, expected_sha256: Optional[str] = None,
                   progress: Optional[dl.ProgressCallback] = None, cancel: Optional[threading.Event] = None,
                   chunk: int = 1 << 20) -> tuple[str, int]:
    """Write ``member`` of the zip at ``archive_path`` to ``dest`` (through ``dest.part``); returns
    (sha256, size). A damaged archive is deleted (DownloadError); a member whose hash is not
    ``expected_sha256`` is not installed (HashMismatchError)."""
    part = dest.with_name(dest.name + PART_SUFFIX)
    hasher, done = hashlib.sha256(), 0
    try:
        with zipfile.ZipFile(archive_path) as archive:
            info = _member(archive, member, archive_path.name)
            dl.check_free_space(dest.parent, info.file_size)
            started = time.monotonic()
            with archive.open(info) as source, open(part, "wb") as out:
                while block := source.read(chunk):
                    if cancel is not None and cancel.is_set():
                        raise dl.DownloadCancelled(f"unpacking {dest.name} cancelled; the downloaded archive is kept")
                    out.write(block)
                    hasher.update(block)
                    done += len(block)
                    if progress is not None:
                        speed = done / max(time.monotonic() - started, 1e-6)
                        progress(dl.DownloadProgress(f"{dest.name} (unpacking)", done, info.file_size, speed,
                                                     (info.file_size - done) / speed, str(archive_path)))
                out.flush()
                os.fsync(out.fileno())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        part.unlink(missing_ok=True)
        archive_path.unlink(missing_ok=True)
        raise dl.DownloadError(f"the downloaded archive {archive_path.name} is damaged or not a zip file ({exc}); "
                               "it was deleted — try again") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    digest = hasher.hexdigest()
    if expected_sha256 and digest != expected_sha256.lower():
        part.unlink(missing_ok=True)
        raise dl.HashMismatchError(f"{member} in {archive_path.name} is not the expected file (sha256 {digest[:12]}… "
                                   f"instead of {expected_sha256[:12]}…); nothing was installed")
    os.replace(part, dest)
    return digest, done


def download_member(urls: Sequence[str], dest: Path, member: str, *, expected_sha256: Optional[str] = None,
                    progress: Optional[dl.ProgressCallback] = None, cancel: Optional[threading.Event] = None,
                    **download_options) -> dl.DownloadResult:
    """Download the zip at the first working URL (resuming ``<dest>.archive.part``), take
    ``member`` out into ``dest``, verify it (see the module doc) and delete the archive."""
    archive = dest.with_name(dest.name + ARCHIVE_SUFFIX)
    url, resumed_from = "the archive downloaded before", 0
    if not archive.is_file():
        download_options.pop("expected_size", None)  # the model's size, not the archive's
        fetched = dl.download_file(urls, archive, progress=progress, cancel=cancel, **download_options)
        url, resumed_from = fetched.url, fetched.resumed_from
    digest, size = extract_member(archive, member, dest, expected_sha256=expected_sha256, progress=progress,
                                  cancel=cancel)
    archive.unlink(missing_ok=True)
    return dl.DownloadResult(dest, digest, size, url, resumed_from)
