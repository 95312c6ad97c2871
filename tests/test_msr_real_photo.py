"""MSR through the pipeline on a 700×515 photo from the shared data, with 256 px windows and an
oracle denoiser (the true ε of the clean photo): the clean photo comes back exactly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.pipeline import run_to_completion
from engine.request import RestoreRequest, Tasks
from tests.test_msr import GlobalOracle
from tests.test_pipeline import shared_data


def clean_photo(h, w):
    path = shared_data() / "kodak" / "05.png"
    if not path.is_file():
        pytest.skip("shared test photos not available")
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB").resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1)[None] * 2 - 1


def to_rgb(t):
    if t.shape[1] == 1:
        t = t.repeat(1, 3, 1, 1)
    return ((t[0].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy()


@pytest.mark.parametrize("task", ["sr2", "sr4", "inpaint", "colorize", "old-photo"])
def test_oracle_msr_on_a_700x515_photo_returns_it(task):
    sr = {"sr2": 2, "sr4": 4, "old-photo": 2}.get(task, 1)
    h, w = (515, 700) if sr == 1 else (516, 700)  # SR outputs must be whole multiples of the factor
    x = clean_photo(h, w)
    h_in, w_in = h // sr, w // sr
    fill = np.zeros((h_in, w_in), bool)
    fill[h_in // 3 : h_in // 2, w_in // 4 : w_in // 2] = True  # crosses several windows
    small = F.avg_pool2d(x, sr) if sr > 1 else x
    if task in ("colorize", "old-photo"):
        small = small.mean(1, keepdim=True)
    photo = to_rgb(small)
    tasks = Tasks(sr=sr, colorize=task in ("colorize", "old-photo"), inpaint=task in ("inpaint", "old-photo"))
    if tasks.inpaint:
        photo[fill] = 1.0  # the damage: what the photo shows under the mask carries no information
    req = RestoreRequest(image=photo, mask=fill if tasks.inpaint else None, tasks=tasks, steps=2, window=256,
                         overlap=128, hir=False, batch=8, device="cpu")
    fin = run_to_completion(req, denoiser=GlobalOracle(x))
    assert fin.result.shape == (h, w, 3)
    assert fin.report["windows"] > 8 and fin.report["batches"] < fin.report["windows"]
    np.testing.assert_allclose(fin.result, to_rgb(x), atol=1e-3)
    assert fin.report["consistency"] < 1e-3
