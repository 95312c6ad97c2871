"""While a run goes, every setting that would change it is locked (the tasks, the model, every
Advanced field, and any section added to the panel later), and each comes back as it was."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractButton, QAbstractSlider, QAbstractSpinBox, QCheckBox, QComboBox, QGroupBox, QLineEdit, QScrollBar,
    QSlider, QVBoxLayout,
)

from gui.run.plan import TaskSettings
from window_helpers import StuckRestore

INPUTS = (QAbstractButton, QComboBox, QAbstractSpinBox, QAbstractSlider, QLineEdit)


def setting_inputs(panel):
    """Every input among the panel's settings (above the run box): what the user can change about the next run."""
    settings = panel.run_settings.parentWidget()
    found = {w for kind in INPUTS for w in settings.findChildren(kind)}
    return [w for w in found if w is not panel.advanced_toggle and not isinstance(w, QScrollBar)]  # of lists


def later_section():
    """What another part of the app may add to the panel (a clean-up task with its options)."""
    box = QGroupBox("Clean up unknown damage")
    layout = QVBoxLayout(box)
    check, slider, combo = QCheckBox("Clean up"), QSlider(), QComboBox()
    for w in (check, slider, combo):
        w.setObjectName("late_control")
        layout.addWidget(w)
    return box


def test_every_setting_is_locked_while_a_run_goes_and_comes_back_as_it_was(window_with_photo, qtbot):
    stuck = StuckRestore()
    window = window_with_photo(stuck)
    panel = window.panel
    panel.add_section(later_section())
    panel.advanced_toggle.setChecked(True)  # Advanced open: its fields are in view
    panel.set_settings(TaskSettings(colorize=True, denoise=True, deblur=False))
    inputs = setting_inputs(panel)
    names = {w.objectName() for w in inputs}
    assert len(inputs) >= 25 and "late_control" in names
    before = {id(w): w.isEnabled() for w in inputs}
    assert before[id(panel.deblur_sigma)] is False and before[id(panel.denoise_strength)] is True

    assert window.restore()
    assert stuck.entered.wait(5)
    unlocked = [w.objectName() or w.metaObject().className() for w in inputs if w.isEnabled()]
    assert unlocked == [], f"changeable during the run: {unlocked}"
    assert panel.advanced_toggle.isEnabled(), "looking at the settings is fine"
    assert panel.denoise.isChecked() and panel.settings().colorize, "locked, not changed"

    window.runs.cancel()
    stuck.release.set()
    assert window.runs.wait_idle()
    qtbot.waitUntil(lambda: not window.runs.running)
    assert {id(w): w.isEnabled() for w in inputs} == before
