"""Attention backends agree, the denoiser wrapper handles learned sigma / labels / precision, and
classifier guidance is the gradient of log p(c | x_t, t) at x_t."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import InputError
from engine.models import (
    ClassifierGuidance,
    Denoiser,
    EpsDenoiser,
    Guidance,
    load_denoiser,
    load_guidance,
    set_attention_backend,
)
from engine.models.attention import legacy_qkv_attention, split_qkv_attention
from engine.models.tiny import build_tiny, tiny_adm_config, tiny_classifier_config, tiny_ddpm_config

CPU = torch.device("cpu")

def _x(batch=2, size=32, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_legacy_qkv_layout_groups_channels_per_head():
    """Reference computed by hand: head h owns rows [h·3C, (h+1)·3C) as q | k | v, scale C^-1/2."""
    b, heads, ch, length = 2, 3, 4, 5
    qkv = torch.randn(b, 3 * heads * ch, length, dtype=torch.float64)
    expected = []
    for h in range(heads):
        block = qkv[:, h * 3 * ch:(h + 1) * 3 * ch]
        q, k, v = block[:, :ch], block[:, ch:2 * ch], block[:, 2 * ch:]
        w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(ch), dim=-1)
        expected.append(torch.einsum("bts,bcs->bct", w, v))
    expected = torch.cat(expected, dim=1)
    for backend in ("eager", "sdpa"):
        assert torch.allclose(legacy_qkv_attention(qkv, heads, backend), expected, atol=1e-10)
    # the new order (classifier pooling) splits q | k | v first: a different result on the same input
    assert not torch.allclose(split_qkv_attention(qkv, heads, "eager"), expected, atol=1e-3)


@pytest.mark.parametrize("config_fn", [tiny_adm_config, tiny_ddpm_config, tiny_classifier_config])
def test_sdpa_and_eager_attention_agree(config_fn):
    config = config_fn()
    net = build_tiny(config)
    x, t = _x(size=32), torch.tensor([10, 900])
    with torch.no_grad():
        assert set_attention_backend(net, "eager") > 0
        eager = net(x, t)
        set_attention_backend(net, "sdpa")
        sdpa = net(x, t)
    assert sdpa.abs().max() > 0.1  # the attention path is not dead (tiny weights are all random)
    assert torch.allclose(sdpa, eager, atol=1e-5, rtol=1e-5)


def test_denoiser_cuts_learned_sigma_and_passes_original_timesteps():
    config = tiny_adm_config()
    net = build_tiny(config)
    denoiser = EpsDenoiser(net, config)
    assert isinstance(denoiser, Denoiser)
    x, t = _x(), torch.tensor([0, 999])
    eps = denoiser(x, t)
    with torch.no_grad():
        full = net(x, t)
    assert full.shape[1] == 6 and eps.shape == x.shape and eps.dtype == torch.float32
    assert torch.equal(eps, full[:, :3])
    # channels_last input layout changes nothing but memory order
    assert torch.allclose(EpsDenoiser(net, config, channels_last=True)(x, t), eps, atol=1e-5)
    # a scalar timestep is broadcast over the batch
    assert torch.equal(denoiser(x, torch.tensor(999)), denoiser(x, torch.tensor([999, 999])))
    assert not torch.allclose(denoiser(x, torch.tensor([5, 5])), denoiser(x, torch.tensor([900, 900])))


def test_class_conditional_model_needs_and_uses_its_label():
    config = tiny_adm_config(class_cond=True)
    net = build_tiny(config)
    with pytest.raises(InputError, match="the model is class-conditional: choose its class"):
        EpsDenoiser(net, config)
    x, t = _x(), torch.tensor([400, 400])
    d3 = EpsDenoiser(net, config, class_label=3)
    with torch.no_grad():
        assert torch.equal(d3(x, t), net(x, t, torch.tensor([3, 3]))[:, :3])
    assert not torch.allclose(d3(x, t), EpsDenoiser(net, config, class_label=4)(x, t))
    with pytest.raises(InputError, match="between 0 and 9"):
        EpsDenoiser(net, config, class_label=10)
    with pytest.raises(InputError, match="between 0 and 9"):
        _tiny_guidance(label=[1, -1])
    with pytest.raises(InputError, match="unconditional"):
        EpsDenoiser(build_tiny(tiny_adm_config()), tiny_adm_config(), class_label=1)


@pytest.mark.parametrize("class_cond, label, words", [
    (True, None, "model my-faces is class-conditional: choose its class (an ImageNet class 0..9)"),
    (False, 3, "a class was given, but model my-faces is unconditional: leave the class out"),
])
def test_class_messages_name_the_model_and_what_the_user_set(class_cond, label, words):
    config = tiny_adm_config(class_cond=class_cond)
    with pytest.raises(InputError) as info:
        EpsDenoiser(build_tiny(config), config, class_label=label, name="my-faces")
    assert str(info.value) == words  # no field name such as class_label: the app and the CLI show it


def test_bf16_autocast_is_close_to_fp32_and_returns_float32():
    config = tiny_adm_config()
    net = build_tiny(config)
    x, t = _x(), torch.tensor([100, 600])
    ref = EpsDenoiser(net, config)(x, t)
    low = EpsDenoiser(net, config, precision="bf16")(x, t)
    assert low.dtype == torch.float32
    assert not torch.equal(low, ref)  # autocast really ran in reduced precision
    rel = (low - ref).norm() / ref.norm()
    assert rel < 0.05
    with pytest.raises(InputError, match="precision"):
        EpsDenoiser(net, config, precision="int8")


def test_networks_accept_any_multiple_of_their_downsampling():
    denoiser = load_denoiser("test-tiny-ddpm", device=CPU)
    assert denoiser.is_random and denoiser.image_size == 256
    for h, w in ((32, 48), (24, 40)):  # multiples of 8 (4 levels)
        assert denoiser(torch.zeros(1, 3, h, w), torch.tensor([10])).shape == (1, 3, h, w)
    with pytest.raises(ValueError, match="multiples of 8"):
        denoiser(torch.zeros(1, 3, 28, 32), torch.tensor([10]))


def test_test_tiny_is_deterministic_and_marked_random():
    a = load_denoiser("test-tiny", device=CPU)
    b = load_denoiser("test-tiny", device=CPU)
    assert a.is_random and a.image_size == 256
    x, t = _x(1), torch.tensor([250])
    assert torch.equal(a(x, t), b(x, t))
    with pytest.raises(InputError, match="is class-conditional: choose its class"):
        EpsDenoiser(build_tiny(tiny_adm_config(class_cond=True)), tiny_adm_config(class_cond=True))


# ---------------------------------------------------------------- classifier guidance


def _tiny_guidance(label, scale=2.0):
    config = tiny_classifier_config()
    return ClassifierGuidance(build_tiny(config), label, scale, num_classes=config.out_channels)


def test_guidance_matches_finite_differences():
    guidance = _tiny_guidance(label=4, scale=2.0)
    assert isinstance(guidance, Guidance)
    x = _x(1, 32, seed=1).double()
    t = torch.tensor([300])
    guidance.classifier.double()
    grad = guidance(x, t).double()
    assert grad.shape == x.shape and grad.abs().max() > 0

    def f(z):
        with torch.no_grad():
            return 2.0 * guidance.log_prob(z, t).sum().item()

    gen = torch.Generator().manual_seed(5)
    for _ in range(3):  # directional derivatives along random directions
        direction = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        h = 1e-4
        numeric = (f(x + h * direction) - f(x - h * direction)) / (2 * h)
        analytic = (grad * direction).sum().item()
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-6)


def test_guidance_is_taken_at_x_t_per_sample():
    guidance = _tiny_guidance(label=[1, 7])
    x, t = _x(2, 32, seed=2), torch.tensor([100, 800])
    batched = guidance(x, t)
    for i, label in enumerate((1, 7)):
        single = _tiny_guidance(label=label)(x[i:i + 1], t[i:i + 1])
        assert torch.allclose(batched[i:i + 1], single, atol=1e-5)
    # a different x_t gives a different gradient (not a cached value from some other point)
    assert not torch.allclose(guidance(x * 0.5, t), batched)
    assert torch.allclose(_tiny_guidance([1, 7], scale=3.0)(x, t), 1.5 * batched, atol=1e-5)


def test_guidance_works_inside_inference_mode():
    guidance = _tiny_guidance(label=2)
    with torch.inference_mode():
        x = _x(1, 32)
        out = guidance(x, torch.tensor([50]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_load_guidance_for_test_tiny():
    assert load_guidance("test-tiny", class_label=3, scale=0.0, device=CPU) is None
    assert load_guidance("test-tiny", class_label=None, scale=1.0, device=CPU) is None
    g = load_guidance("test-tiny", class_label=3, scale=1.0, device=CPU)
    assert isinstance(g, Guidance)
    assert g(_x(2, 64), torch.tensor([10, 20])).shape == (2, 3, 64, 64)
    # any window size works: the pooling grid is resized
    assert g(_x(1, 32), torch.tensor([10])).shape == (1, 3, 32, 32)
