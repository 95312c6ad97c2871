"""Quitting never prints a traceback: the quit sequence of issue 16 runs in a process of its own,
so what Python prints at exit (atexit callbacks, Qt's fatal messages) is seen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("engine.pipeline")

SCRIPT = Path(__file__).with_name("quit_sequence.py")
#: What Python or Qt prints when something goes wrong at exit.
ALARMS = ("Traceback", "Exception ignored", "Destroyed while", "already deleted", "Fatal")


@pytest.mark.slow
def test_restore_cancel_continue_finish_quit_prints_no_traceback(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True,
                          timeout=240, env=env)
    alarms = [line for line in done.stderr.splitlines() if any(a in line for a in ALARMS)]
    assert "QUIT CLEANLY" in done.stdout, done.stderr[-3000:]
    assert done.returncode == 0 and not alarms, done.stderr[-3000:]
