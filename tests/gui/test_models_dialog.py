"""Models dialog and welcome dialog with pytest-qt, downloading from a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QLabel  # noqa: E402

from engine.models import catalog as cat  # noqa: E402
from engine.models import download as dl  # noqa: E402

PAYLOAD = os.urandom(400_000)


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD for /fake.pt in 20 kB pieces, 10 ms apart, with Range support."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/fake.pt":
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        try:
            for i in range(start, len(PAYLOAD), 20_000):
                self.wfile.write(PAYLOAD[i:i + 20_000])
                self.wfile.flush()
                time.sleep(0.01)
        except OSError:
            pass


@pytest.fixture
def fake_store(tmp_path, monkeypatch):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    catalog = tmp_path / "models.json"
    catalog.write_text(json.dumps({"models": [
        {"id": "fake", "display_name": "Fake general model", "purpose": "general photos", "file_name": "fake.pt",
         "architecture": "adm", "size_bytes": len(PAYLOAD), "size_exact": True, "urls": [f"{url}/fake.pt"],
         "sha256": hashlib.sha256(PAYLOAD).hexdigest(), "hash_policy": "pinned", "recommended": True},
        {"id": "gone", "display_name": "Gone", "purpose": "faces", "file_name": "gone.pt", "architecture": "ddpm",
         "urls": [f"{url}/gone.pt"], "sha256": None, "hash_policy": "record-on-first-download"},
    ]}))
    monkeypatch.setenv("RESTORER_MODEL_CATALOG", str(catalog))
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("RESTORER_MODEL_MIRROR", raising=False)
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL", 0.0)
    cat.set_models_dir(None)
    yield tmp_path / "models"
    httpd.shutdown()
    httpd.server_close()


def test_download_shows_progress_and_installs(qtbot, fake_store):
    from gui.models.dialog import ModelsDialog

    dialog = ModelsDialog(mirror="")
    qtbot.addWidget(dialog)
    assert dialog.status_of("fake") == "missing" and dialog.status_of("gone") == "missing"
    assert dialog.selected_id() == "fake"  # the recommended model is preselected
    seen = []
    dialog.download_progress.connect(seen.append)
    qtbot.mouseClick(dialog.download_button, Qt.LeftButton)
    assert dialog.is_busy() and dialog.cancel_button.isEnabled() and not dialog.download_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=15_000)
    assert dialog.status_of("fake") == "installed", dialog.last_error
    assert (fake_store / "fake.pt").read_bytes() == PAYLOAD
    assert len(seen) >= 3 and seen[-1].done == seen[-1].total == len(PAYLOAD)
    assert "installed" in dialog.message_label.text()
    row = [dialog.table.item(r, 3).text() for r in range(dialog.table.rowCount())]
    assert row[0] == "Installed"


def test_cancel_leaves_partial_then_resume(qtbot, fake_store):
    from gui.models.dialog import ModelsDialog

    dialog = ModelsDialog(mirror="")
    qtbot.addWidget(dialog)
    seen = []
    dialog.download_progress.connect(seen.append)
    dialog.download("fake")
    qtbot.waitUntil(lambda: bool(seen) and seen[-1].done > 50_000, timeout=10_000)
    dialog.cancel_job()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=10_000)
    assert dialog.status_of("fake") == "partial" and "Cancelled" in dialog.message_label.text()
    assert dialog.download_button.text() == "Resume download"
    part = (fake_store / "fake.pt.part").stat().st_size
    assert 0 < part < len(PAYLOAD)
    dialog.download("fake")
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=15_000)
    assert dialog.status_of("fake") == "installed" and (fake_store / "fake.pt").read_bytes() == PAYLOAD


def test_failed_download_shows_error_inline(qtbot, fake_store):
    from gui.models.dialog import ModelsDialog

    dialog = ModelsDialog(mirror="")
    qtbot.addWidget(dialog)
    dialog.download("gone")
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=10_000)
    assert "not found" in dialog.last_error and dialog.status_of("gone") == "missing"


def test_import_verify_remove(qtbot, fake_store, tmp_path, monkeypatch):
    from engine.models.tiny import build_tiny, tiny_ddpm_config
    from gui.models.dialog import ModelsDialog

    ckpt = tmp_path / "my_faces.pt"
    torch.save(build_tiny(tiny_ddpm_config()).state_dict(), ckpt)
    dialog = ModelsDialog(mirror="")
    qtbot.addWidget(dialog)
    changed = []
    dialog.models_changed.connect(lambda: changed.append(1))
    dialog.import_file(str(ckpt))
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=15_000)
    assert dialog.status_of("my_faces") == "installed", dialog.last_error
    assert dialog.selected_id() == "my_faces" and changed
    dialog.verify_selected()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=10_000)
    assert "intact" in dialog.message_label.text()
    dialog.import_file(str(tmp_path / "models.json"))  # not a checkpoint
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=10_000)
    assert "models.json" in dialog.last_error
    monkeypatch.setattr(dialog, "confirm", lambda text: True)
    dialog.select("my_faces")
    dialog.remove_selected()
    assert dialog.status_of("my_faces") is None and not (fake_store / "my_faces.pt").exists()


def test_importing_an_installed_file_again_selects_its_model(qtbot, fake_store, tmp_path):
    from engine.models.tiny import build_tiny, tiny_ddpm_config
    from gui.models.dialog import ModelsDialog

    ckpt = tmp_path / "my_faces.pt"
    torch.save(build_tiny(tiny_ddpm_config()).state_dict(), ckpt)
    dialog = ModelsDialog(mirror="")
    qtbot.addWidget(dialog)
    for _ in range(2):
        dialog.select("gone")
        dialog.import_file(str(ckpt))
        qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=15_000)
    assert dialog.selected_id() == "my_faces"
    assert dialog.message_label.text() == "my_faces.pt is already installed as “my_faces”: nothing to import."
    assert not dialog.last_error and "color" not in dialog.message_label.styleSheet()


@pytest.fixture
def modal_dialogs():
    """The titles of the modal dialogs that open during the test; each is closed at once (one would block it)."""
    seen: list[str] = []
    for _ in range(10):  # left open by an earlier test
        if QApplication.activeModalWidget() is not None:
            QApplication.activeModalWidget().close()

    def look() -> None:
        widget = QApplication.activeModalWidget()
        if widget is not None:
            seen.append(widget.windowTitle())
            widget.reject()

    timer = QTimer()
    timer.timeout.connect(look)
    timer.start(20)
    yield seen
    timer.stop()
    timer.timeout.disconnect(look)


def test_the_welcome_is_a_banner_that_takes_no_keys_and_downloads(qtbot, fake_store, make_window, modal_dialogs):
    from gui.models.welcome import should_show_welcome

    window = make_window()
    window.maybe_show_welcome()
    qtbot.wait(100)
    assert modal_dialogs == [], "no dialog over the window"
    banner = window.welcome
    assert banner is not None and banner.isVisible() and window.panel.isAncestorOf(banner)
    assert banner.download_button.text() == "Download recommended (0.4 MB)"
    assert "Import a file…" == banner.import_button.text() and "Not now" == banner.continue_button.text()
    assert "does not restore photos" in " ".join(label.text() for label in banner.findChildren(QLabel))
    window.act_brush.setChecked(True)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_E)
    assert window.act_eraser.isChecked(), "keys reach the window while the welcome is shown"
    qtbot.mouseClick(banner.download_button, Qt.LeftButton)
    models = window.models_dialog()
    assert window.welcome is None and models.isVisible()
    qtbot.waitUntil(lambda: not models.is_busy(), timeout=15_000)
    assert models.status_of("fake") == "installed", models.last_error
    assert not should_show_welcome() and window.panel.model.findData("fake") >= 0
    models.reject()


def test_not_now_is_remembered(qtbot, fake_store, make_window):
    from gui.settings import AppSettings

    window = make_window()
    window.maybe_show_welcome()
    banner = window.welcome
    qtbot.mouseClick(banner.continue_button, Qt.LeftButton)
    assert window.welcome is None and not banner.isVisible()
    again = make_window(settings=AppSettings())  # the next start
    again.maybe_show_welcome()
    assert again.welcome is None, "the welcome does not come back at every start"


def test_the_mirror_is_kept_in_the_app_settings(qtbot, fake_store, monkeypatch):
    from gui.models.dialog import ModelsDialog
    from gui.settings import AppSettings

    dialog = ModelsDialog()
    qtbot.addWidget(dialog)
    monkeypatch.setattr(dialog, "_start", lambda *args: None)  # no download: only the setting matters
    dialog.mirror_edit.setText("https://mirror.example/models/")
    dialog.download("fake")
    assert AppSettings().get("models/mirror") == "https://mirror.example/models/"
    again = ModelsDialog()
    qtbot.addWidget(again)
    assert again.mirror_edit.text() == "https://mirror.example/models/"


def test_cancel_stops_an_import_and_changes_nothing(qtbot, fake_store, tmp_path, monkeypatch):
    from engine.models import store
    from engine.models.tiny import build_tiny, tiny_ddpm_config
    from gui.models.dialog import ModelsDialog

    ckpt = tmp_path / "big_faces.pt"
    torch.save(build_tiny(tiny_ddpm_config()).state_dict(), ckpt)
    reading, release = threading.Event(), threading.Event()
    inspect = store.inspect_checkpoint

    def slow_inspect(path):  # reading a 2 GB checkpoint cannot be interrupted
        reading.set()
        release.wait(10)
        return inspect(path)

    monkeypatch.setattr(store, "inspect_checkpoint", slow_inspect)
    dialog = ModelsDialog(mirror="")
    qtbot.addWidget(dialog)
    dialog.import_file(str(ckpt))
    assert reading.wait(5) and dialog.cancel_button.isEnabled() and dialog.cancel_button.text() == "Cancel"
    qtbot.mouseClick(dialog.cancel_button, Qt.LeftButton)
    release.set()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=10_000)
    assert dialog.message_label.text() == "Import cancelled: nothing was changed."
    assert dialog.status_of("big_faces") is None and not (fake_store / "big_faces.pt").exists()


CLOSE_DURING_IMPORT = """
import sys, threading
from PySide6.QtWidgets import QApplication
import shiboken6
from engine.models import store
app = QApplication([])
reading, release = threading.Event(), threading.Event()
def slow_import(path, **options):  # stuck in torch.load of a large file
    reading.set()
    release.wait(30)
    raise store.ModelFileError("too late")
store.import_model_file = slow_import
from gui.models.dialog import ModelsDialog
dialog = ModelsDialog(mirror="")
dialog.show()
dialog.import_file(sys.argv[1])
assert reading.wait(10)
dialog.close()
print("closed while reading:", not release.is_set(), flush=True)
shiboken6.delete(dialog)  # the app quits: the dialog and what it owns are destroyed
release.set()
print("survived", flush=True)
"""


def test_closing_and_destroying_the_dialog_during_an_import_does_not_abort(tmp_path):
    """A QThread destroyed while it runs aborts the process: the dialog must not own it."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RESTORER_MODELS_DIR=str(tmp_path / "models"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", CLOSE_DURING_IMPORT, str(tmp_path / "model.pt")], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "closed while reading: True" in proc.stdout and "survived" in proc.stdout


def test_the_main_window_keeps_one_models_dialog_and_its_running_job(qtbot, make_window, tmp_path, monkeypatch):
    """Models… opens the same dialog each time (none is left behind). A job running in it when it
    is hidden (Esc) goes on, shows when it is opened again, and its model reaches the window's list."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from engine.models import store
    from engine.models.tiny import build_tiny, tiny_ddpm_config
    from gui.models.dialog import ModelsDialog

    ckpt = tmp_path / "slow_faces.pt"
    torch.save(build_tiny(tiny_ddpm_config()).state_dict(), ckpt)
    reading, release = threading.Event(), threading.Event()
    inspect = store.inspect_checkpoint

    def slow_inspect(path):
        reading.set()
        release.wait(10)
        return inspect(path)

    monkeypatch.setattr(store, "inspect_checkpoint", slow_inspect)
    window = make_window()
    QTimer.singleShot(5000, window, lambda: [w.reject() for w in window.findChildren(ModelsDialog)])  # never block
    dialogs = []
    for _ in range(2):
        window.open_models_dialog()
        qtbot.waitUntil(lambda: isinstance(QApplication.activeModalWidget(), ModelsDialog), timeout=2000)
        dialogs.append(QApplication.activeModalWidget())
        if len(dialogs) == 1:
            dialogs[0].import_file(str(ckpt))
            assert reading.wait(5)
        else:
            assert dialogs[1].is_busy() and dialogs[1].cancel_button.isEnabled()
        dialogs[-1].reject()  # Esc hides it
    assert dialogs[0] is dialogs[1] and window.findChildren(ModelsDialog) == dialogs[:1]
    release.set()
    qtbot.waitUntil(lambda: window.panel.model.findData("slow_faces") >= 0, timeout=10_000)


def test_an_imported_classifier_says_what_it_is_for_and_is_offered_for_guidance(qtbot, make_window, tmp_path):
    from engine.models.tiny import build_tiny, tiny_classifier_config

    ckpt = tmp_path / "my_classifier.pt"
    torch.save(build_tiny(tiny_classifier_config()).state_dict(), ckpt)
    window = make_window()
    dialog = window.models_dialog()
    dialog.import_file(str(ckpt))
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=15_000)
    assert "It is a classifier: it guides a class-conditional model" in dialog.message_label.text(), dialog.last_error
    assert dialog.table.item(dialog.table.currentRow(), 1).text() == "classifier guidance"
    panel = window.panel
    assert panel.classifier.findData("my_classifier") >= 0 and panel.model.findData("my_classifier") < 0


def test_an_unreachable_server_says_how_to_set_a_mirror_here(qtbot, tmp_path, monkeypatch):
    """Not the CLI's --mirror: the Mirror box of the dialog the user is looking at."""
    import socket

    from gui.models.dialog import ModelsDialog

    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    catalog = tmp_path / "models.json"
    catalog.write_text(json.dumps({"models": [
        {"id": "far", "display_name": "Far away", "purpose": "general photos", "file_name": "far.pt",
         "architecture": "adm", "urls": [f"http://127.0.0.1:{port}/far.pt"], "sha256": None,
         "hash_policy": "record-on-first-download"}]}))
    monkeypatch.setenv("RESTORER_MODEL_CATALOG", str(catalog))
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("RESTORER_MODEL_MIRROR", raising=False)
    cat.set_models_dir(None)
    dialog = ModelsDialog(mirror="")
    qtbot.addWidget(dialog)
    dialog.download("far")
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=15_000)
    message = dialog.message_label.text()
    assert "cannot reach 127.0.0.1" in message and "Mirror box" in message, message
    assert "--mirror" not in message
