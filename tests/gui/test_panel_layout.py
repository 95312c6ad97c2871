"""The task panel at the window's first-start size (1400×900): room to see the settings, the
model's name in full, and Advanced settings named and explained for a photographer."""

from __future__ import annotations

from PySide6.QtWidgets import QScrollArea

from gui.run.plan import TEST_TINY, TaskSettings


def first_start_window(make_window, qtbot):
    window = make_window()
    window.resize(1400, 900)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == (1400, 900))
    return window


def test_the_settings_have_room_and_the_model_name_shows_in_full(make_window, make_photo, qtbot):
    window = first_start_window(make_window, qtbot)
    panel = window.panel
    panel.set_settings(TaskSettings(colorize=True, model=TEST_TINY))
    window.document.set_photo(make_photo(400, 600))  # a note and the estimate below the settings
    panel.advanced_toggle.setChecked(True)
    qtbot.wait(50)
    scroll = next(a for a in panel.findChildren(QScrollArea) if a.widget().isAncestorOf(panel.run_settings))
    fields = [panel.advanced.layout().itemAt(i).widget() for i in range(panel.advanced.layout().count())]
    view = scroll.viewport()
    shown = [f for f in fields if f is not None and f.isVisible()
             and view.rect().contains(f.mapTo(view, f.rect().topLeft()))
             and view.rect().contains(f.mapTo(view, f.rect().bottomRight()))]
    assert len(shown) >= 20, f"opening Advanced shows its settings ({len(shown)} of {len(fields)} items in view)"
    combo = panel.model
    needed = combo.fontMetrics().horizontalAdvance(combo.currentText()) + combo.iconSize().width()
    assert needed + 24 <= combo.width(), f"{combo.currentText()!r} is cut off at {combo.width()} px"


def test_advanced_settings_say_what_they_do_and_when_to_change_them(make_window, qtbot):
    panel = first_start_window(make_window, qtbot).panel
    form = panel.advanced.layout()
    words = {  # a field, and what its explanation must talk about
        panel.travel_length: ("blend", "slow", "raise"), panel.travel_repeat: ("blend", "off"),
        panel.eta: ("texture", "lower", "raise"), panel.sigma_y: ("grain", "raise"),
        panel.hir: ("whole photo", "turn it off"), panel.window_size: ("trained", "leave"),
        panel.overlap: ("seams", "slower", "half the window"), panel.steps: ("detail", "longer"),
    }
    labels = []
    for field, topics in words.items():
        label = form.labelForField(field)
        labels.append(label.text())
        tip = field.toolTip().lower()
        assert label.toolTip() == field.toolTip(), "the name explains itself on hover too"
        assert all(topic in tip for topic in topics), (label.text(), tip)
    assert not {"Travel L", "Travel r", "η (eta)", "σ_y", "HiR", "Window", "Overlap"} & set(labels), labels
