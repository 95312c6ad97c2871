"""Models dialog: see which models are installed, download (with progress and cancel), import,
verify and remove them. Slow work (downloads, hashing, importing) runs in a
:class:`gui.background.BackgroundTask`, which only sends plain data to the GUI thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QDialog, QFileDialog, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout)

from gui.background import BackgroundTask
from gui.settings import AppSettings

#: How the app's errors say to set a mirror (the engine's messages name the CLI's flag).
APP_MIRROR_HOW = "type the mirror's address in the Mirror box of this dialog"
STATUS_TEXT = {"installed": "Installed", "missing": "Not installed", "corrupt": "Damaged — verify or repair",
               "partial": "Download unfinished"}


def human_size(n: Optional[float]) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def human_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "time left unknown"
    if seconds < 90:
        return f"{seconds:.0f} s left"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min left"
    return f"{seconds / 3600:.1f} h left"


class ModelsDialog(QDialog):
    """Lists catalog and imported models with their status; Download / Import / Verify / Remove."""

    models_changed = Signal()  # something was installed or removed (the main window refreshes its list)
    download_progress = Signal(object)  # re-emitted DownloadProgress, for anyone who wants to show it

    def __init__(self, parent=None, *, models_dir: Optional[str] = None, mirror: Optional[str] = None,
                 settings: Optional[AppSettings] = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(820, 460)
        self.models_dir = models_dir
        self._settings = settings or AppSettings()  # the app's one store (Restorer.ini)
        self._task: Optional[BackgroundTask] = None
        self._on_success: Callable[[Any], None] = lambda result: None
        self._cancelled_text = ""
        self.last_error = ""

        self.folder_label = QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Model", "Good for", "Size", "Status"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextSelectableByMouse)

        self.mirror_edit = QLineEdit(mirror if mirror is not None else self._settings.get("models/mirror", "", str))
        self.mirror_edit.setPlaceholderText("optional: a mirror address, e.g. https://mirror.example/models/")
        self.link_box = QCheckBox("Import by linking to the file (saves disk space; keep the original where it is)")

        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.progress_label = QLabel()
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextSelectableByMouse)

        self.download_button = QPushButton("Download")
        self.cancel_button = QPushButton("Cancel")
        self.import_button = QPushButton("Import…")
        self.verify_button = QPushButton("Verify")
        self.remove_button = QPushButton("Remove")
        self.folder_button = QPushButton("Open folder")
        close_button = QPushButton("Close")
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button.clicked.connect(self.cancel_job)
        self.import_button.clicked.connect(self.choose_and_import)
        self.verify_button.clicked.connect(self.verify_selected)
        self.remove_button.clicked.connect(self.remove_selected)
        self.folder_button.clicked.connect(self.open_folder)
        close_button.clicked.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addWidget(self.folder_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        mirror_row = QHBoxLayout()
        mirror_row.addWidget(QLabel("Mirror:"))
        mirror_row.addWidget(self.mirror_edit, 1)
        layout.addLayout(mirror_row)
        layout.addWidget(self.link_box)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.message_label)
        buttons = QHBoxLayout()
        for b in (self.download_button, self.cancel_button, self.import_button, self.verify_button,
                  self.remove_button, self.folder_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close_button)
        layout.addLayout(buttons)
        self.refresh()

    # ------------------------------------------------------------------ table

    def refresh(self) -> None:
        from engine.errors import EngineError
        from engine.models import catalog as cat

        selected = self.selected_id()
        try:
            self.folder_label.setText(f"Models folder: {cat.models_dir(self.models_dir)}")
            states = cat.list_models(self.models_dir)
        except EngineError as exc:
            self.show_message(str(exc), error=True)
            states = []
        self.states = {s.id: s for s in states}
        self.table.setRowCount(len(states))
        for row, s in enumerate(states):
            name = s.display_name + ("  (recommended)" if s.entry.recommended else "")
            name += "  (imported)" if s.entry.custom else ""
            restricted = s.entry.licence_confirmation and "non-commercial" in s.entry.licence.lower()
            name += "  (non-commercial)" if restricted else ""
            cells = [name, s.entry.purpose, human_size(s.entry.size_bytes), STATUS_TEXT.get(s.status, s.status)]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, s.id)
                if col == 3 and s.detail:
                    item.setToolTip(s.detail)
                self.table.setItem(row, col, item)
        self.select(selected or next((s.id for s in states if s.entry.recommended), None))
        self._update_buttons()

    def selected_id(self) -> Optional[str]:
        items = self.table.selectedItems()
        return items[0].data(Qt.UserRole) if items else None

    def select(self, model_id: Optional[str]) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.UserRole) == model_id:
                self.table.selectRow(row)
                return

    def status_of(self, model_id: str) -> Optional[str]:
        state = getattr(self, "states", {}).get(model_id)
        return state.status if state else None

    def _update_buttons(self) -> None:
        busy = self._task is not None
        state = self.states.get(self.selected_id() or "") if hasattr(self, "states") else None
        can_get = bool(state and not state.entry.custom and state.status != "installed")
        self.download_button.setEnabled(not busy and can_get)
        self.download_button.setText("Resume download" if state and state.status == "partial" else
                                     "Repair" if state and state.status == "corrupt" else "Download")
        self.cancel_button.setEnabled(busy)
        self.import_button.setEnabled(not busy)
        self.verify_button.setEnabled(not busy and bool(state and state.status in ("installed", "corrupt")))
        self.remove_button.setEnabled(not busy and bool(state and state.status != "missing"))
        if state:
            e = state.entry
            sources = "; ".join(e.manual_sources) if not e.urls and e.manual_sources else ""
            network = f"Network: {e.extra['summary']}." if e.extra.get("summary") else ""
            self.details.setText(" ".join(p for p in (e.description, network, f"Licence: {e.licence}." if e.licence else "",
                                                      f"Get it from: {sources}" if sources else "") if p))
        else:
            self.details.setText("")

    def show_message(self, text: str, error: bool = False) -> None:
        if error:
            self.last_error = text
        self.message_label.setStyleSheet("color: #c62828;" if error else "")
        self.message_label.setText(text)

    # ------------------------------------------------------------------ jobs

    def _start(self, work, on_success: Callable[[Any], None], busy_text: str,
               cancelled_text: str) -> None:
        if self._task is not None:
            return
        self._task = BackgroundTask(work, self)
        self._task.progress.connect(self._on_progress)
        self._task.succeeded.connect(self._job_succeeded)
        self._task.failed.connect(self._job_failed)
        self._task.cancelled.connect(self._job_cancelled)
        self._on_success, self._cancelled_text = on_success, cancelled_text
        self.show_message(busy_text)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setVisible(True)
        self.progress_label.setText("")
        self._update_buttons()
        self._task.start()

    @Slot(object)
    def _job_succeeded(self, result: Any) -> None:
        self._finish(lambda: self._on_success(result))

    @Slot(str)
    def _job_failed(self, message: str) -> None:
        self._finish(lambda: self.show_message(message, error=True))

    @Slot()
    def _job_cancelled(self) -> None:
        self._finish(lambda: self.show_message(self._cancelled_text))

    def _finish(self, then: Callable[[], None]) -> None:
        if self._task is not None:
            self._task.deleteLater()  # its thread is kept alive by gui.run.worker until it has ended
        self._task = None
        self.progress_bar.setVisible(False)
        self.progress_label.setText("")
        self.refresh()
        then()
        self.models_changed.emit()

    def is_busy(self) -> bool:
        return self._task is not None

    @Slot(object)
    def _on_progress(self, p: Any) -> None:
        if isinstance(p, tuple):  # hashing: (label, done, total)
            label, done, total = p
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * done / max(total, 1)))
            self.progress_label.setText(f"{label}: {human_size(done)} of {human_size(total)}")
            return
        self.download_progress.emit(p)
        if p.total:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * p.done / p.total))
        else:
            self.progress_bar.setRange(0, 0)
        self.progress_label.setText(f"{p.file_name}: {human_size(p.done)} of {human_size(p.total)} · "
                                    f"{human_size(p.speed)}/s · {human_time(p.eta)}")

    def cancel_job(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.show_message("Cancelling…")

    def confirm_licence(self, text: str) -> bool:
        box = QMessageBox(QMessageBox.Question, "Licence", text, QMessageBox.Yes | QMessageBox.No, self)
        box.button(QMessageBox.Yes).setText("Accept and download")
        box.setDefaultButton(QMessageBox.No)
        return box.exec() == QMessageBox.Yes

    def licences_accepted(self, model_ids: list[str]) -> bool:
        """Each model to get whose licence restricts its use is shown and must be accepted."""
        from engine.models import catalog as cat

        for mid in model_ids:
            state = self.states.get(mid)
            if state is not None and state.entry.licence_confirmation and state.status != "installed":
                if not self.confirm_licence(cat.licence_notice(state.entry)):
                    self.show_message(f"{state.display_name} was not downloaded: its licence was not accepted.")
                    return False
        return True

    def download(self, model_id: str) -> None:
        """Download (or resume/repair) a model and its companions in the background."""
        from engine.models import store

        if not self.licences_accepted(store.with_companions(model_id, self.models_dir)):
            return
        mirror = self.mirror_edit.text().strip()
        self._settings.set("models/mirror", mirror)
        directory = self.models_dir

        def work(progress, cancel):
            from engine.models import catalog as cat
            from engine.models import download as dl

            try:
                for mid in store.with_companions(model_id, directory):
                    if cat.model_status(mid, directory) == cat.INSTALLED:
                        continue
                    if cat.model_status(mid, directory) == cat.CORRUPT:
                        store.repair_models([mid], models_dir=directory, mirror=mirror or None, progress=progress,
                                            cancel=cancel)
                    else:
                        store.download_model(mid, models_dir=directory, mirror=mirror or None, progress=progress,
                                             cancel=cancel)
            except dl.NetworkError as exc:  # the advice names the app's own mirror setting, not the CLI's
                raise type(exc)(str(exc).replace(dl.MIRROR_HOW, APP_MIRROR_HOW)) from exc
            return model_id

        self._start(work, lambda mid: self.show_message(f"{self.states[mid].display_name} is installed."),
                    "Downloading…", "Cancelled. What was downloaded is kept; press Resume download to continue.")

    def download_selected(self) -> None:
        if self.selected_id():
            self.download(self.selected_id())

    def import_file(self, path: str) -> None:
        from engine.models import store

        mode = "symlink" if self.link_box.isChecked() else "copy"
        directory = self.models_dir

        def work(progress, cancel):
            try:
                return store.import_model_file(path, models_dir=directory, mode=mode, cancel=cancel,
                                               progress=lambda d, t: progress(("Checking", d, t)))
            except store.AlreadyInstalled as exc:  # nothing to do: not an error for the user
                return exc

        def done(result):
            self.select(result.model_id)
            name = self.states[result.model_id].display_name
            if isinstance(result, store.AlreadyInstalled):
                self.show_message(f"{Path(path).name} is already installed as “{name}”: nothing to import.")
                return
            kind = "as" if result.matched_catalog else "as your own model"
            use = (" It is a classifier: it guides a class-conditional model towards a class. Choose it as the "
                   "Classifier in the Restore panel's Advanced settings." if result.kind and result.kind.role == "classifier"
                   else "")
            if result.kind and result.kind.role == "cleanup":
                licence = result.kind.licence or "not stated"
                use = (f" It is a clean-up network ({result.kind.summary}; code licence {licence}): choose it under "
                       "Clean up unknown damage in the Restore panel.")
            self.show_message(f"Imported {Path(path).name} {kind} “{name}”.{use}")

        self._start(work, done, f"Checking {Path(path).name}…", "Import cancelled: nothing was changed.")

    def choose_and_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a model file", "",
                                              "Model checkpoints (*.pt *.pth *.ckpt *.safetensors *.bin);;All files (*)")
        if path:
            self.import_file(path)

    def verify_selected(self) -> None:
        from engine.models import store

        model_id = self.selected_id()
        if not model_id:
            return
        directory = self.models_dir

        def work(progress, cancel):
            return store.verify_models([model_id], models_dir=directory, cancel=cancel,
                                       progress=lambda mid, d, t: progress(("Verifying", d, t)))

        def done(results):
            r = results[0]
            text = {"ok": "The file is intact.", "recorded": "The file's fingerprint was recorded for later checks.",
                    "mismatch": "The file is damaged. Press Repair to download it again."}.get(r.status, r.detail)
            self.show_message(text, error=r.status in ("mismatch", "unusable"))

        self._start(work, done, "Verifying…", "Verification cancelled.")

    def confirm(self, text: str) -> bool:
        return QMessageBox.question(self, "Remove model", text) == QMessageBox.Yes

    def remove_selected(self) -> None:
        from engine.errors import EngineError
        from engine.models import store

        model_id = self.selected_id()
        if not model_id or not self.confirm(f"Delete {self.states[model_id].display_name} from the models folder?"):
            return
        try:
            store.remove_model(model_id, models_dir=self.models_dir)
        except (EngineError, OSError) as exc:
            self.show_message(str(exc), error=True)
        self.refresh()
        self.models_changed.emit()

    def open_folder(self) -> None:
        from engine.models import catalog as cat

        QDesktopServices.openUrl(QUrl.fromLocalFile(str(cat.models_dir(self.models_dir))))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        """Closes at once: a running job is told to stop and ends in the background (its outcome
        still updates the models list); a checkpoint being read cannot be interrupted."""
        if self._task is not None:
            self._task.cancel()
        super().closeEvent(event)
