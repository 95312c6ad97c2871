"""Save in the GUI keeps a gray photo gray (the document holds the LoadedImage of the file)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gui.files import ops as file_ops
from gui.document.document import Document


@pytest.mark.parametrize("colorize", [False, True])
def test_saving_the_result_of_a_gray_photo_keeps_it_gray_unless_colorized(tmp_path, colorize):
    gray = (np.random.default_rng(4).random((12, 16)) * 255).astype(np.uint8)
    alpha = np.full((12, 16), 200, np.uint8)
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "in.png")
    doc = Document()
    pixels, loaded = file_ops.load_photo(str(tmp_path / "in.png"))
    doc.set_photo(pixels, str(tmp_path / "in.png"), loaded)
    doc.begin_preview(2)  # ×2, as a run with super-resolution does
    result = doc.preview.copy()
    if colorize:
        result[..., 0] = np.clip(result[..., 0] + 0.1, 0, 1)
    doc.finish_preview(result)
    assert file_ops.save_photo(str(tmp_path / "out.png"), file_ops.result_pixels(doc), doc.loaded) == []
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (32, 24) and im.mode == ("RGBA" if colorize else "LA")
        assert np.asarray(im)[..., -1].min() == 200
