"""The main window: canvas in the middle, task panel on the right, log at the bottom, menus,
tool bar and status bar. File handling is in :mod:`gui.files.window_files` (files read and written in the
background by :mod:`gui.files.jobs`), runs in :mod:`gui.run.controller`, the model list, model files
and the Models dialog in :mod:`gui.models.window_models`.
"""

from __future__ import annotations

import threading
from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication, QDockWidget, QLabel, QMainWindow, QSlider, QToolBar,
)

from gui.files import ops as file_ops
from gui.document import mask_tools
from gui.document_view import DocumentView
from gui.app import apply_theme, icon
from gui.background import BackgroundTask
from gui.canvas.view import Canvas
from gui.files.jobs import SAVE, FileJobs
from gui.files.window_files import FileCommands
from gui.models.window_models import ModelCommands
from gui.dialogs import ShortcutsDialog, show_about, show_error
from gui.document.damage import DamageCommands
from gui.document.document import Document
from gui.panels.log_panel import LogPanel
from gui.run.controller import RunController
from gui.run.plan import TaskSettings
from gui.run.speed import SpeedBook
from gui.settings import AppSettings
from gui.panels.task_panel import TaskPanel
from gui.document.undo import ApplyResultCommand, mask_replace_command
from gui.run.worker import RestoreFunction

GROW_STEP = 4  # pixels per Grow / Shrink
PANEL_WIDTH = 380  # the task panel's width at first start (the user's own is kept)


class MainWindow(DocumentView, FileCommands, ModelCommands, DamageCommands, QMainWindow):
    probed = Signal(object, object)  # installed_choices(), (spec, description) devices: from a probe thread

    def __init__(self, settings: Optional[AppSettings] = None, restore: Optional[RestoreFunction] = None,
                 probe_devices: bool = True, interactive: bool = True):
        super().__init__()
        self.settings = settings or AppSettings()
        self.interactive = interactive  # False in tests: no modal dialogs
        self.document = Document(self)
        self._photo_has_colours = False  # checked once per photo (the panel's Colorize hint)
        self.canvas = Canvas(self.document)
        self.panel = TaskPanel()
        self.log_panel = LogPanel()
        self.runs = RunController(self.document, self.canvas, self.panel, self.log_panel, restore, self)
        self.runs.show_dialogs = interactive
        self.runs.speeds = SpeedBook(self.settings)  # measured by each run, used by the estimate
        self.panel.set_speeds(self.runs.speeds)
        self._mark_saved()  # nothing to save yet
        self.files = FileJobs(self.statusBar(), self)  # a photo or mask being read, a file being written
        self._run_state = "ready"
        self._mask_marked = False  # whether the mask marked anything (painting one ticks Fill)
        self._mask_shown_before: Optional[bool] = None  # while hidden for a finished result or the compare view
        self.save_target: Optional[file_ops.SaveTarget] = None  # where Ctrl+S writes, with the Save-as options
        self.welcome_on_first_run = False  # main() sets it: show gui.models.welcome once the model list is known
        self.welcome = None  # the welcome banner in the task panel, while it is shown
        self._model_check: Optional[BackgroundTask] = None  # a chosen checkpoint being read
        self._models_dialog = None  # made on first use (models_dialog)
        self.setWindowTitle("Restorer")
        self.setCentralWidget(self.canvas)
        self.setAcceptDrops(True)
        self._build_docks()
        self.build_damage_dock()
        self._build_actions()
        self._build_toolbar()
        self._build_menus()
        self._build_status_bar()
        self._connect()
        self._restore_settings()
        self.installed_model_count = 0
        if probe_devices:  # the catalog and device list import torch: do it off the GUI thread
            self.probed.connect(self._on_probed)
            threading.Thread(target=self._probe, name="model-device-probe", daemon=True).start()
        else:
            self.refresh_models()
            self.panel.set_devices([("cpu", "CPU")])

    # ---- layout -------------------------------------------------------------------------
    def _build_docks(self) -> None:
        self.panel_dock = QDockWidget("Restore", self)
        self.panel_dock.setObjectName("panel_dock")
        self.panel_dock.setWidget(self.panel)  # the panel scrolls its settings, not its run buttons
        self.panel_dock.setMinimumWidth(300)
        self.addDockWidget(Qt.RightDockWidgetArea, self.panel_dock)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("log_dock")
        self.log_dock.setWidget(self.log_panel)
        self.addDockWidget(Qt.BottomDockWidgetArea, self.log_dock)
        self.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)  # the panel runs the full height
        self.resizeDocks([self.log_dock], [130], Qt.Vertical)
        self.resizeDocks([self.panel_dock], [PANEL_WIDTH], Qt.Horizontal)

    def _action(self, text: str, slot, shortcut=None, icon_name: str = "", checkable: bool = False) -> QAction:
        action = QAction(icon(icon_name) if icon_name else icon("none"), text, self)
        if shortcut:
            action.setShortcuts([QKeySequence(s) for s in shortcut] if isinstance(shortcut, (list, tuple))
                                else [QKeySequence(shortcut)])
        action.setCheckable(checkable)
        keys = action.shortcut().toString(QKeySequence.NativeText)
        action.setToolTip(f"{text.replace('&', '').rstrip('…')} ({keys})" if keys else text.replace("&", ""))
        (action.toggled if checkable else action.triggered).connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        a, c, d = self._action, self.canvas, self.document
        self.act_open = a("&Open…", self.open_dialog, QKeySequence.Open, "open")
        self.act_paste = a("&Paste photo", self.paste, QKeySequence.Paste)
        self.act_save = a("&Save", self.save, QKeySequence.Save, "save")
        self.act_save_as = a("Save &as…", self.save_as, QKeySequence.SaveAs)
        self.act_import_mask = a("Import mask…", self.import_mask)
        self.act_export_mask = a("Export mask…", self.export_mask)
        self.act_quit = a("&Quit", self.close, QKeySequence.Quit)
        self.act_undo = d.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcut(QKeySequence.Undo)
        self.act_undo.setIcon(icon("undo"))
        self.act_redo = d.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.act_redo.setIcon(icon("redo"))
        for act, redo in ((self.act_undo, False), (self.act_redo, True)):  # the stack's text and enabling stay
            act.triggered.disconnect()
            act.triggered.connect(lambda _checked=False, redo=redo: self.undo_or_redo(redo))
        self.act_clear_mask = a("Clear mask", lambda: self.mask_op(mask_tools.clear_mask, "Clear mask"),
                                "Ctrl+Delete", "mask-clear")
        self.act_invert_mask = a("Invert mask", lambda: self.mask_op(mask_tools.invert_mask, "Invert mask"),
                                 "Ctrl+I", "mask-invert")
        self.act_detect = a("&Detect damage", self.detect_damage, "Ctrl+D", "detect")
        self.act_grow = a(f"Grow mask ({GROW_STEP} px)", lambda: self.mask_op(
            lambda m: mask_tools.grow_mask(m, GROW_STEP), "Grow mask"), "Ctrl+Shift+G")
        self.act_shrink = a(f"Shrink mask ({GROW_STEP} px)", lambda: self.mask_op(
            lambda m: mask_tools.grow_mask(m, -GROW_STEP), "Shrink mask"), "Ctrl+Alt+G")
        self.act_fit = a("&Fit to window", c.fit, "Ctrl+0", "fit")
        self.act_100 = a("&100 %", c.actual_size, "Ctrl+1")
        self.act_zoom_in = a("Zoom &in", lambda: c.zoom_by(1.25), ["+", "=", "Ctrl++"])
        self.act_zoom_out = a("Zoom &out", lambda: c.zoom_by(0.8), ["-", "Ctrl+-"])
        self.act_show_mask = a("Show &mask", self._set_mask_visible, "M", checkable=True)
        self.act_compare = a("&Before/after split", self._set_compare, "C", "compare", checkable=True)
        self.act_dark = a("&Dark theme", self._set_dark, checkable=True)
        self.act_smaller = a("Smaller brush", lambda: c.set_brush_radius(c.brush.resized(1 / 1.2)), "[")
        self.act_larger = a("Larger brush", lambda: c.set_brush_radius(c.brush.resized(1.2)), "]")
        self.tool_group = QActionGroup(self)
        self.act_brush = a("&Brush", lambda on: on and c.set_tool("brush"), "B", "brush", checkable=True)
        self.act_eraser = a("&Eraser", lambda on: on and c.set_tool("eraser"), "E", "eraser", checkable=True)
        self.act_pan = a("&Hand (pan)", lambda on: on and c.set_tool("pan"), "H", "hand", checkable=True)
        for act in (self.act_brush, self.act_eraser, self.act_pan):
            self.tool_group.addAction(act)
        self.act_restore = a("&Restore", self.restore, "Ctrl+R", "restore")
        self.act_cancel = a("&Cancel", self.cancel_or_abort, "Esc", "cancel")
        self.act_apply = a("&Apply result", self.runs.apply, "Ctrl+Return")
        self.act_discard = a("&Discard result", self.runs.discard)
        self.act_models = a("&Manage models…", self.open_models_dialog)  # download, import, verify, remove
        self.act_model_file = a("Use a model &file…", self.choose_model_file)
        self.act_help = a("&Keyboard shortcuts", lambda: ShortcutsDialog(self).exec(), "F1")
        self.act_about = a("&About", lambda: show_about(self))

    def _build_toolbar(self) -> None:
        bar = QToolBar("Tools", self)
        bar.setObjectName("tools_toolbar")
        bar.setToolButtonStyle(Qt.ToolButtonIconOnly)
        for act in (self.act_open, self.act_save, None, self.act_undo, self.act_redo, None, self.act_brush,
                    self.act_eraser, self.act_pan):
            bar.addSeparator() if act is None else bar.addAction(act)
        self.size_slider = self._slider(bar, "Size", 1, 400, "Brush size in photo pixels ([ and ])")
        self.hardness_slider = self._slider(bar, "Hardness", 0, 100, "Soft (0) to hard (100) brush edge")
        self.opacity_slider = self._slider(bar, "Mask", 0, 100, "Mask overlay opacity")
        bar.addSeparator()
        for act in (self.act_detect, self.act_clear_mask, self.act_invert_mask, None, self.act_fit, self.act_compare):
            bar.addSeparator() if act is None else bar.addAction(act)
        self.addToolBar(Qt.TopToolBarArea, bar)
        self.toolbar = bar

    def _slider(self, bar: QToolBar, label: str, lo: int, hi: int, tip: str) -> QSlider:
        bar.addSeparator()
        text = QLabel(f" {label} ")
        slider = QSlider(Qt.Horizontal)
        slider.setRange(lo, hi)
        slider.setFixedWidth(90)
        slider.setToolTip(tip)
        text.setToolTip(tip)
        value = QLabel()
        value.setMinimumWidth(34)
        slider.valueChanged.connect(lambda v: value.setText(f" {v}"))
        bar.addWidget(text)
        bar.addWidget(slider)
        bar.addWidget(value)
        return slider

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addActions([self.act_open])
        self.recent_menu = m.addMenu("Open &recent")
        m.addActions([self.act_paste, self.act_save, self.act_save_as])
        m.addSeparator()
        m.addActions([self.act_import_mask, self.act_export_mask])
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Edit")
        m.addActions([self.act_undo, self.act_redo])
        m.addSeparator()
        m.addActions([self.act_clear_mask, self.act_invert_mask, self.act_grow, self.act_shrink])
        m = mb.addMenu("&View")
        m.addActions([self.act_fit, self.act_100, self.act_zoom_in, self.act_zoom_out])
        m.addSeparator()
        m.addActions([self.act_show_mask, self.act_compare, self.act_dark])
        m.addActions([self.panel_dock.toggleViewAction(), self.log_dock.toggleViewAction()])
        m = mb.addMenu("&Tools")
        m.addActions([self.act_detect, self.act_brush, self.act_eraser, self.act_pan, self.act_smaller, self.act_larger])
        m = mb.addMenu("&Models")
        m.addActions([self.act_models, self.act_model_file])
        m = mb.addMenu("&Run")
        m.addActions([self.act_restore, self.act_cancel, self.act_apply, self.act_discard])
        m = mb.addMenu("&Help")
        m.addActions([self.act_help, self.act_about])
        self._update_recent_menu()

    def _build_status_bar(self) -> None:
        self.status_zoom, self.status_cursor, self.status_size = QLabel(), QLabel(), QLabel()
        for w in (self.status_cursor, self.status_size, self.status_zoom):
            w.setMinimumWidth(90)
            self.statusBar().addPermanentWidget(w)

    def _connect(self) -> None:
        c, d = self.canvas, self.document
        c.zoom_changed.connect(lambda z: self.status_zoom.setText(f"{z * 100:.0f} %"))
        c.cursor_moved.connect(self._show_cursor)
        c.brush_changed.connect(lambda r: self.size_slider.setValue(round(r)))
        self.size_slider.valueChanged.connect(lambda v: c.set_brush_radius(v) if round(c.brush.radius) != v else None)
        self.hardness_slider.valueChanged.connect(lambda v: setattr(c.brush, "hardness", v / 100.0))
        self.opacity_slider.valueChanged.connect(lambda v: c.set_mask_opacity(v / 100.0))
        d.image_changed.connect(self._on_image_changed)
        d.mask_changed.connect(self._on_mask_changed)
        d.path_changed.connect(lambda _p: self._update_title())
        # an edit, undo or redo; a result or none (a method, not a lambda: not called once the window is deleted)
        d.undo_stack.indexChanged.connect(self._update_title)
        d.preview_changed.connect(self._update_title)
        d.preview_changed.connect(self._show_sizes)
        self.panel.choose_model_file.connect(self.choose_model_file)
        self.panel.open_models.connect(self.open_models_dialog)
        self.panel.get_fast_upscaler.connect(self.get_fast_upscaler)
        self.panel.restore_requested.connect(self.restore)
        self.runs.message.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.runs.state_changed.connect(self._on_run_state)
        self.files.changed.connect(self._on_files_changed)
        self._on_run_state("ready")

    # ---- settings -----------------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        geometry, state = s.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        if state is not None:
            self.restoreState(state)
        self.panel.set_settings(TaskSettings.from_dict(s.get_json("task_settings", {})))
        self.canvas.set_brush_radius(s.get("brush/radius", 24.0, float))
        self.size_slider.setValue(round(self.canvas.brush.radius))
        self.hardness_slider.setValue(round(100 * s.get("brush/hardness", 0.7, float)))
        self.opacity_slider.setValue(round(100 * s.get("mask/opacity", 0.5, float)))
        self.act_show_mask.setChecked(True)
        self.act_brush.setChecked(True)
        self.act_dark.blockSignals(True)  # the theme itself is applied by the app at start-up
        self.act_dark.setChecked(s.theme == "dark")
        self.act_dark.blockSignals(False)

    def save_settings(self) -> None:
        s = self.settings
        s.save_window_state(self.saveGeometry(), self.saveState())
        s.set_json("task_settings", self.panel.settings().to_dict())
        s.set("brush/radius", self.canvas.brush.radius)
        s.set("brush/hardness", self.canvas.brush.hardness)
        s.set("mask/opacity", self.canvas.mask_opacity)
        s.sync()

    def closeEvent(self, event) -> None:
        """Closes at once, unless a file is being saved: then the window stays, says so, and closes
        once the file is written (or stays with the error, the work unsaved). A photo or mask still
        being read is dropped. A run is stopped by confirm_discard; its worker thread may still be in
        a model call, and gui.run.worker keeps it alive (and waits for it at exit) instead of blocking here."""
        if self.files.kind != SAVE:
            self.files.drop()  # a photo or mask still being read: not wanted any more
            if self.confirm_discard("closing", self.close):
                self._drop_model_check()  # its thread ends on its own; gui.run.worker waits for it at exit
                self.save_settings()
                super().closeEvent(event)
                return
        if self.files.kind == SAVE:  # saving, maybe just now because the user chose to
            self.files.after(self.close)
            self.statusBar().showMessage(f"{self.files.message} The window closes once the file is written.")
        event.ignore()

    # ---- edits --------------------------------------------------------------------------
    def mask_op(self, op, text: str) -> None:
        if not self.document.has_image:
            return
        command = mask_replace_command(self.document, op(self.document.mask), text)
        if command is not None:
            self.document.undo_stack.push(command)

    def undo_or_redo(self, redo: bool) -> None:
        """Undo (or Redo) the last step, except an Apply while a run is going: that would swap
        the photo the run restores, and its result would land on another photo."""
        stack = self.document.undo_stack
        step = stack.command(stack.index() if redo else stack.index() - 1)
        if self.runs.running and isinstance(step, ApplyResultCommand):
            what = "Redo" if redo else "Undo"
            self.statusBar().showMessage(f"{what} of Apply waits for the restoration: cancel it first", 5000)
            return
        (stack.redo if redo else stack.undo)()

    def cancel_or_abort(self) -> None:
        if self.canvas._stroke is not None:
            self.canvas.abort_stroke()
        else:
            self.runs.cancel()

    @staticmethod
    def app_instance() -> QApplication:
        return QApplication.instance()

    def _set_dark(self, on: bool) -> None:
        self.settings.theme = "dark" if on else "light"
        app = QApplication.instance()
        if app is not None:
            apply_theme(app, self.settings.theme)

    # ---- state ----------------------------------------------------------------------------
    def _on_run_state(self, state: str) -> None:
        self._run_state = state
        self._update_title()
        self.act_cancel.setEnabled(True)
        self.act_apply.setEnabled(state == "preview")
        self.act_discard.setEnabled(state == "preview")
        self._enable_busy_actions()
        self._hide_mask_where_it_hides_the_result()

    def _on_files_changed(self, kind: str) -> None:
        self.panel.set_waiting("files", kind and f"{self.files.message} Restore waits for it to finish.")
        self._enable_busy_actions()

    def _enable_busy_actions(self) -> None:
        """Restore and Save wait for a run (what it paints is not a result yet) and for a file being
        read or written; the masks wait for a file too; Open and Paste wait for a file being written
        (a photo still being read is replaced: the latest wins)."""
        running, files = self._run_state == "running", self.files.kind
        for act in (self.act_restore, self.act_save, self.act_save_as):
            act.setEnabled(not running and not files)
        for act in (self.act_import_mask, self.act_export_mask):
            act.setEnabled(not files)
        for act in (self.act_open, self.act_paste):
            act.setEnabled(files != SAVE)

    def _error(self, title: str, message: str) -> None:
        """Log ``message`` and show it in a dialog titled ``title`` (e.g. "Cannot save")."""
        self.log_panel.add("error", message)
        if self.interactive:
            show_error(self, "error", message, title)
        else:
            self.last_error = message
