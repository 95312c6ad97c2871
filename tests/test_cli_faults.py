"""The CLI under real faults, in real processes: a full disk, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cli_restore_helpers import FAST, photo_file
from tests.full_disk import run_on_full_disk

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_full_disk_says_no_space_left_and_leaves_no_empty_state_folder(tmp_path):
    """The saved progress (numpy) and the 16-bit TIFF (tifffile) are 384 KiB each, on a 256 KiB disk:
    both writes stop midway, where numpy and tifffile say only how many bytes they wrote."""
    photo, disk = photo_file(tmp_path / "p.png", (256, 256)), tmp_path / "disk"
    disk.mkdir()
    out = disk / "out.tif"
    proc, left = run_on_full_disk(disk, [sys.executable, "-m", "engine", "restore", str(photo), "-o", str(out),
                                         "--bit-depth", "16", "--colorize", "--steps", "1", "--tiling", "none",
                                         "--overlap", "32", *FAST], size="256k", fill=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "progress of this run cannot be saved" in proc.stderr and "No space left on device" in lines[-1]
    assert lines[-1].startswith("error: cannot write") and "requested and" not in proc.stderr
    assert left == []  # neither the result nor an empty state folder


@pytest.mark.slow
def test_an_import_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    from engine.models.tiny import build_tiny, tiny_ddpm_config

    src, disk = tmp_path / ("a-long-folder-name-" * 4) / "model.pt", tmp_path / "models"
    src.parent.mkdir()
    disk.mkdir()
    torch.save(build_tiny(tiny_ddpm_config()).state_dict(), src)
    proc, left = run_on_full_disk(disk, [sys.executable, "-m", "engine", "models", "import", str(src), "--symlink",
                                         "--models-dir", str(disk)])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == f"error: cannot import model.pt into {disk}: No space left on device"
    assert set(left) <= {".restorer.lock"}  # no orphan link, no temporary file


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_keeps_the_finished_windows_and_says_so(tmp_path):
    photo, out = photo_file(tmp_path / "p.png", (64, 64)), tmp_path / "out.png"
    state = Path(str(out) + ".restorer-state")
    run = subprocess.Popen([sys.executable, "-m", "engine", "restore", str(photo), "-o", str(out), "--colorize",
                            "--steps", "20", "--model", "test-tiny", "--window", "32", "--overlap", "16",
                            "--no-hir", "--device", "cpu", "--no-progress"],
                           cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (state / "state.json").exists():  # the first level is finished and saved
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before saving a level"
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGTERM)  # a desktop session logging out
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 143, err
    assert "terminated" in err and "finished window(s) are kept in" in err and "--resume" in err
    assert "Traceback" not in err and not out.exists() and (state / "state.json").exists()
