"""ResShift's residual-shifting sampler (engine.resshift.diffusion / upscaler): the official schedule
numbers, the reverse chain's algebra, and noise that depends only on the seed and the position."""

import json

import numpy as np
import pytest
import torch

from engine.geometry import Box
from engine.models.catalog import resources_dir
from engine.resshift.diffusion import ResShiftSchedule, sample_latent
from engine.resshift.load import load_upscaler
from engine.resshift.upscaler import LEVELS, position_noise

# Literal numbers computed locally by running the public code (zsyOAOA/ResShift at commit 3ce1d81):
# util_common.instantiate_from_config(OmegaConf.load(CONFIG).diffusion) for CONFIG =
# configs/realsr_swinunet_realesrgan256_journal.yaml (v3, 4 steps) and, for the 15-step models,
# configs/realsr_swinunet_realesrgan256.yaml; then .sqrt_etas, .posterior_variance_clipped,
# .posterior_mean_coef1 and .posterior_mean_coef2 printed with repr. Our code never runs theirs.
V3_SQRT_ETAS = [0.1, 0.5200963722082474, 0.761381990619204, 0.9899999999999998]
V3_VARIANCE_CLIPPED = [0.03852125822384904, 0.03852125822384904, 0.5771187110423733, 0.9472969099212355]
V3_COEF1 = [0.0, 0.03696854440377432, 0.46661903261452564, 0.5914728452599346]
V3_COEF2 = [1.0, 0.9630314555962256, 0.5333809673854744, 0.40852715474006535]
V2_SQRT_ETAS = [0.02, 0.11716508229842353, 0.1763045552718477, 0.23362891654933204, 0.2915741277643212,
                0.3510092843173155, 0.41235614430048023, 0.4758577309189876, 0.5416716776269754,
                0.609909933449294, 0.6806580171436284, 0.7539852624945498, 0.8299506624114896,
                0.908606387785769, 0.9899999999999998]


def test_the_v3_schedule_is_the_official_configs():
    # the config's diffusion.params: steps 4, kappa 2.0, min_noise_level 0.2, etas_end 0.99, power 0.3
    schedule = ResShiftSchedule(steps=4, kappa=2.0, min_noise_level=0.2, etas_end=0.99, power=0.3)
    assert schedule == ResShiftSchedule()  # the defaults are v3's
    c = schedule.coefficients()
    np.testing.assert_allclose(schedule.sqrt_etas(), V3_SQRT_ETAS, rtol=1e-15)
    np.testing.assert_allclose(c["noise_std"] ** 2, V3_VARIANCE_CLIPPED, rtol=1e-14)
    np.testing.assert_allclose(c["keep"], V3_COEF1, rtol=1e-15, atol=0)
    np.testing.assert_allclose(c["take"], V3_COEF2, rtol=1e-15)
    np.testing.assert_allclose(c["prior_std"][-1], 2.0 * 0.99, rtol=1e-15)


def test_the_15_step_schedule_is_the_earlier_configs():
    np.testing.assert_allclose(ResShiftSchedule(steps=15, min_noise_level=0.04).sqrt_etas(), V2_SQRT_ETAS, rtol=1e-15)


def test_catalog_models_carry_their_configs_schedule():
    models = {m["id"]: m for m in json.loads((resources_dir() / "models.json").read_text())["models"]}
    assert ResShiftSchedule(**models["resshift-realsr-x4"]["schedule"]) == ResShiftSchedule()
    for mid in ("resshift-realsr-x4-v1", "resshift-realsr-x4-v2"):
        np.testing.assert_allclose(ResShiftSchedule(**models[mid]["schedule"]).sqrt_etas(), V2_SQRT_ETAS, rtol=1e-15)


def test_the_chain_scales_the_input_and_ends_on_the_prediction():
    schedule = ResShiftSchedule()
    y = torch.randn(2, 3, 8, 8)
    x0 = torch.randn(2, 3, 8, 8)
    seen, draws = [], []

    def denoise(x, t):
        seen.append((x.clone(), t.clone()))
        return x0

    def noise(k):
        draws.append(k)
        return torch.full_like(y, float(k + 1))

    out = sample_latent(denoise, y, schedule, noise)
    assert torch.allclose(out, x0, atol=1e-6)  # η_0's posterior keeps nothing of x_t at the last step
    assert [int(t[0]) for _, t in seen] == [3, 2, 1, 0] and draws == [0, 1, 2, 3, 4]
    c = schedule.coefficients()
    x_t = y + c["prior_std"][3] * 1.0  # the first draw is all ones
    assert torch.allclose(seen[0][0], x_t / c["input_std"][3], atol=1e-6)
    x_2 = c["keep"][3] * x_t + c["take"][3] * x0 + c["noise_std"][3] * 2.0
    assert torch.allclose(seen[1][0], x_2 / c["input_std"][2], atol=1e-5)


def test_noise_depends_only_on_the_seed_and_the_position():
    whole = position_noise(5, 1, 0, 0, 64, 80, 3)
    part = position_noise(5, 1, 13, 21, 30, 40, 3)
    assert torch.equal(part, whole[:, 13:43, 21:61])
    assert not torch.equal(position_noise(6, 1, 0, 0, 64, 80, 3), whole)
    assert not torch.equal(position_noise(5, 2, 0, 0, 64, 80, 3), whole)
    assert abs(float(whole.mean())) < 0.05 and abs(float(whole.std()) - 1) < 0.05


@pytest.fixture(scope="module")
def tiny():
    return load_upscaler("test-tiny-resshift", device=torch.device("cpu"), seed=11)


def test_tiles_do_not_depend_on_the_batch_and_land_on_the_16_bit_grid(tiny):
    tiles = torch.rand(2, 3, 16, 24)
    boxes = [Box(0, 0, 16, 24), Box(8, 16, 16, 24)]
    both = tiny(tiles, boxes)
    assert both.shape == (2, 3, 64, 96)
    # the same noise whatever the batch; only the network's float order may differ with the batch size
    assert float((both[1:] - tiny(tiles[1:], boxes[1:])).abs().max()) <= 1.01 / LEVELS
    scaled = both * LEVELS
    assert torch.equal(scaled, scaled.round()) and 0 <= float(both.min()) and float(both.max()) <= 1
    assert not torch.equal(both[:1], tiny(tiles[:1], [Box(0, 8, 16, 24)]))  # another place, other noise
