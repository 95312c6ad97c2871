"""Large scans (600–1200 dpi, 16-bit): what the app holds and does per photo, stroke and paint.

The photos here are small, generated ones; the tests assert the structure that keeps a
10000×8000 scan cheap (no full-size copies, work proportional to the region touched), not times.
"""

from __future__ import annotations

import numpy as np

from engine import image_io


def test_an_opened_16_bit_scan_is_held_once(make_window, make_photo, tmp_path):
    path = tmp_path / "scan.tif"
    image_io.save_image(path, make_photo(300, 400), bit_depth=16)
    window = make_window()
    assert window.open_path(str(path))
    doc, canvas = window.document, window.canvas
    assert doc.loaded.bit_depth == 16
    assert np.shares_memory(doc.image, doc.loaded.rgb), "the decoded pixels are the photo (the file's metadata keeps no copy)"
    assert doc.original is doc.image, "nothing applied yet: the original is the photo itself"
    window.act_compare.setChecked(True)
    canvas.grab()
    before, after = canvas._before_after()
    assert before is after is canvas._base, "comparing with the original draws the photo's own layer"
