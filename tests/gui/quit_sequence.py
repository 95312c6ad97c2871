"""Run by test_quit.py in a process of its own (atexit output is what it checks): the app, offscreen,
with the real engine and test-tiny: Restore → Cancel → Restore again (the question's "Continue")
→ the run finishes → Ctrl+Q → Discard. Prints ``QUIT CLEANLY`` once the event loop has ended.

The cancelled run's worker thread ends in the last moments of the app: its ``finished`` signal is
half delivered when the window closes (a direct hook, connected just before the slot that lets
gui.run.worker's registry go, waits until the event loop has ended). On a CPU a cancelled
denoiser call can end just as the user quits; the hook makes that moment certain.

    python tests/gui/quit_sequence.py SETTINGS_FOLDER
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402


def main(folder: Path) -> int:
    os.environ["RESTORER_MODELS_DIR"] = str(folder / "models")
    os.environ["RESTORER_RUNS_DIR"] = str(folder / "runs")
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(folder))

    from conftest import make_photo
    from gui.app import create_application
    from gui.files.unsaved import UnsavedWork
    from gui.main_window import MainWindow
    from gui.run import worker
    from gui.run.plan import TaskSettings
    from gui.settings import AppSettings
    from window_helpers import write_photo

    UnsavedWork.ask_pending_result = lambda self: "discard"  # the "Continue" button
    UnsavedWork.ask_save_changes = lambda self, action: "discard"  # Ctrl+Q → Discard

    loop_ended = threading.Event()
    keep_alive, hooked = worker.keep_alive, []

    def keep_alive_late_end(thread, work, cancel):
        if not hooked:  # the first run: the one that is cancelled
            hooked.append(thread)
            thread.finished.connect(lambda: loop_ended.wait(30), Qt.DirectConnection)
        keep_alive(thread, work, cancel)

    worker.keep_alive = keep_alive_late_end

    app = create_application([sys.argv[0]])
    window = MainWindow(AppSettings(), probe_devices=False)
    window.show()
    photo = folder / "photo.png"
    write_photo(photo, make_photo(96, 96))
    window.open_path(str(photo))
    settings = TaskSettings(colorize=True, model="test-tiny", steps=2, window=64, overlap=32, hir="off",
                            device="cpu", quality="Custom")
    steps = iter([
        (lambda: window.document.has_image and not window.files.kind,
         lambda: (window.panel.set_settings(settings), window.restore())),
        (lambda: window.runs.windows_finished >= 1, window.runs.cancel),
        (lambda: not window.runs.running, window.restore),
        (lambda: window.runs.windows_finished >= 1 and not window.runs.running, window.act_quit.trigger),
    ])
    step = [next(steps)]

    def tick() -> None:
        ready, act = step[0]
        if ready():
            act()
            step[0] = next(steps, None)
        if step[0] is not None:
            QTimer.singleShot(10, tick)

    QTimer.singleShot(0, tick)
    QTimer.singleShot(120_000, app.quit)  # never hang a test run
    code = app.exec()
    loop_ended.set()
    if step[0] is None and not window.isVisible():
        print("QUIT CLEANLY", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
