"""Random-weight tiny networks through the whole pipeline: noiseless tasks end consistent with y
(‖A x − y‖ / ‖y‖ < 1e-3) and the run is deterministic for a fixed seed on CPU."""

import numpy as np
import pytest

from engine.pipeline import run_to_completion
from engine.request import RestoreRequest, Tasks


def _photo(h=48, w=80):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([0.5 + 0.4 * np.sin(xx / 7), 0.5 + 0.4 * np.cos(yy / 5), (xx + yy) / (h + w)], -1)
    return np.clip(img, 0, 1).astype(np.float32)


MASK = np.zeros((48, 80), bool)
MASK[10:30, 25:60] = True

# (tasks, window): blur-like operators see the whole photo in one window (a window's blur ignores
# what lies outside it, so tiled or padded deblurring is consistent only inside each window).
CASES = {
    "sr2": (Tasks(sr=2), 32),
    "colorize": (Tasks(colorize=True), 32),
    "inpaint": (Tasks(inpaint=True), 32),
    "old-photo": (Tasks(inpaint=True, colorize=True, sr=2), 32),
    "colorize-hir": (Tasks(colorize=True), 32),
    "old-photo-hir": (Tasks(inpaint=True, colorize=True, sr=2), 32),
    "bicubic-sr2": (Tasks(sr=2, sr_kernel="bicubic"), None),
    "deblur": (Tasks(deblur="gauss:1.0"), None),
}


@pytest.mark.parametrize("model", ["test-tiny", "test-tiny-ddpm"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_noiseless_tasks_end_consistent_and_deterministic(model, case):
    tasks, window = CASES[case]
    if window is None:  # one window, exactly the output size: no padding
        side = 64 // tasks.sr
        photo, size = _photo(side, side), 64
        req = RestoreRequest(image=photo, tasks=tasks, model=model, steps=2, window=size, overlap=16, tiling="none",
                             device="cpu")
    else:
        req = RestoreRequest(image=_photo(), mask=MASK if tasks.inpaint else None, tasks=tasks, model=model, steps=2,
                             window=window, overlap=16, tiling="msr", hir=case.endswith("-hir"), device="cpu")
    first = run_to_completion(req)
    assert (first.report["hir_factor"] > 1) == case.endswith("-hir")
    assert first.report["consistency"] < 1e-3, first.report
    assert first.result.min() >= 0.0 and first.result.max() <= 1.0
    second = run_to_completion(req)
    np.testing.assert_array_equal(first.result, second.result)
    third = run_to_completion(req.replace(seed=req.seed + 1))
    assert not np.array_equal(first.result, third.result), "the seed must matter"
