"""A real full disk for a test: a command runs in its own mount namespace (``unshare``, no root
needed where unprivileged user namespaces are allowed) with a tiny tmpfs mounted on a folder and
filled up, so every write there fails with ENOSPC as on a full disk. Tests skip where it cannot be
made."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_SCRIPT = """
mount -t tmpfs -o size=$SIZE restorer-full-disk "$DISK" || exit 97
[ "$FILL" = 1 ] && cat /dev/zero > "$DISK/.filler" 2>/dev/null
"$@"
status=$?
ls -A "$DISK" > "$LISTING"
exit $status
"""


@functools.lru_cache(maxsize=None)
def _can_mount() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
                                'mount -t tmpfs -o size=64k none "$0"', folder], capture_output=True, timeout=60)
    return probe.returncode == 0


def run_on_full_disk(disk: Path, command: list[str], size: str = "256k", fill: bool = True,
                     timeout: float = 300) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``command`` while ``disk`` (an existing, empty folder) is a disk of ``size`` bytes,
    full from the start (``fill``) or one that a larger write fills up midway. Returns the process
    and the names the disk held when it ended (besides the filler)."""
    if not _can_mount():
        pytest.skip("a full disk needs unprivileged user namespaces (unshare --user --mount)")
    listing = disk.parent / f"{disk.name}.listing"
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _SCRIPT, "sh", *command],
                          capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "DISK": str(disk), "LISTING": str(listing),
                               "SIZE": size, "FILL": "1" if fill else "0"})
    if proc.returncode == 97:
        pytest.skip(f"could not mount a small disk: {proc.stderr.strip()}")
    names = [n for n in listing.read_text().split() if n != ".filler"] if listing.exists() else []
    return proc, names
