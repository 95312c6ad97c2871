"""The installed Qt binding keeps Python's reference counts intact.

PySide6-Essentials 6.12.0 removes one reference to ``None`` on every Qt call that returns nothing.
Where ``None`` is reference counted (Python < 3.12), a long session reaches zero and the app
aborts with "Fatal Python error: none_dealloc". pyproject.toml keeps such builds out; this test
fails if one gets in again.
"""

from __future__ import annotations

import sys

import pytest
from PySide6.QtWidgets import QLabel

CALLS = 2000


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12 (PEP 683)")
def test_void_qt_calls_keep_the_reference_count_of_none(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    keep = [None] * (4 * CALLS)  # headroom: a leaking binding must not abort this test itself
    before = sys.getrefcount(None)
    for _ in range(CALLS):
        label.setText("x")
        label.update()
    lost = before - sys.getrefcount(None)
    del keep
    assert lost < CALLS // 10, f"{lost} references to None lost in {2 * CALLS} Qt calls"
