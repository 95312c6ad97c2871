"""Precision ``auto`` per device, bf16 weights on the CPU, and the compiled network: one compile for
every batch size of 2+, exact fallback to the eager network when compiling fails."""

import shutil

import numpy as np
import pytest
import torch

import engine.device as device_mod
from engine.device import pick_precision
from engine.errors import InputError
from engine.events import LogEvent
from engine.models import load_denoiser
from engine.models.checkpoint import ModelConfig
from engine.models.speed import CompiledNetwork, compile_network
from engine.models.tiny import build_tiny, tiny_adm_config
from engine.models.wrappers import EpsDenoiser
from engine.pipeline import restore, run_to_completion
from engine.request import RestoreRequest, Tasks

CPU = torch.device("cpu")


def _inputs(batch, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g), torch.randint(0, 1000, (batch,), generator=g)


@pytest.mark.parametrize("native_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, native_bf16, expected):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: native_bf16)
    assert pick_precision("auto", CPU) == expected
    assert pick_precision("fp32", CPU) == "fp32"  # an explicit choice is kept
    assert pick_precision("fp16", CPU) == "fp16"


@pytest.mark.parametrize("bf16_ok, capability, expected", [(True, (8, 0), "bf16"), (False, (7, 5), "fp16"),
                                                            (False, (6, 1), "fp32")])
def test_auto_precision_on_cuda_prefers_bf16(monkeypatch, bf16_ok, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    assert pick_precision("auto", torch.device("cuda", 0)) == expected
    assert pick_precision("auto", torch.device("mps")) == "fp32"


def test_channels_last_only_where_it_pays():
    from engine.models.speed import channels_last_pays

    assert channels_last_pays(CPU, "bf16")
    assert not channels_last_pays(CPU, "fp32")
    assert not channels_last_pays(torch.device("cuda", 0), "bf16")


def test_unknown_precision_is_refused():
    with pytest.raises(InputError, match="precision"):
        pick_precision("int4", CPU)


def test_cpu_bf16_casts_weights_once_and_stays_close_to_fp32():
    ref = load_denoiser("test-tiny", device=CPU, precision="fp32")
    low = load_denoiser("test-tiny", device=CPU, precision="bf16")
    convs = [m for m in low.net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in low.net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    assert norms and all(m.weight.dtype == torch.bfloat16 for m in norms)  # cast once; statistics stay fp32
    assert low.channels_last and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert not ref.channels_last  # fp32 on the CPU: NHWC gains nothing there
    x, t = _inputs(2)
    a, b = ref(x, t), low(x, t)
    assert b.dtype == torch.float32
    assert float((a - b).norm() / a.norm()) < 0.05


def test_pipeline_resolves_auto_and_reports_it():
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    req = RestoreRequest(image=image, tasks=Tasks(sr=2), model="test-tiny", steps=2, window=32, overlap=16,
                         device="cpu", hir=False)
    assert req.precision == "auto"
    report = run_to_completion(req).report
    assert report["precision"] == pick_precision("auto", CPU) and report["compiled"] is False


class CountingBackend:
    """A torch.compile backend that runs the traced graph as is and counts compilations."""

    def __init__(self):
        self.compiles = 0

    def __call__(self, gm, example_inputs):
        self.compiles += 1
        return gm.forward


def test_one_compile_serves_every_batch_of_two_or_more():
    torch._dynamo.reset()
    cfg = tiny_adm_config()
    net = build_tiny(cfg)
    backend = CountingBackend()
    compiled = EpsDenoiser(compile_network(net, backend=backend), cfg)
    eager = EpsDenoiser(net, cfg)
    for batch in (2, 3, 4, 1, 3, 1, 5):
        x, t = _inputs(batch, seed=batch)
        torch.testing.assert_close(compiled(x, t), eager(x, t), atol=1e-5, rtol=1e-5)
    assert backend.compiles == 2  # one dynamic-batch graph, one for batch 1
    assert compiled.net.fallback_reason is None


def test_failed_compile_falls_back_to_the_identical_eager_network():
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here\nlong details")

    torch._dynamo.reset()
    cfg = tiny_adm_config()
    net = build_tiny(cfg)
    wrapped = CompiledNetwork(net, backend=broken)
    x, t = _inputs(2)
    out = EpsDenoiser(wrapped, cfg)(x, t)
    assert torch.equal(out, EpsDenoiser(net, cfg)(x, t))
    assert "no compiler here" in wrapped.fallback_reason and "long details" not in wrapped.fallback_reason


def test_pipeline_warns_and_reports_when_compiling_fails(monkeypatch):
    def broken_compile(net, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("inductor is unavailable")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    image = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    req = RestoreRequest(image=image, tasks=Tasks(colorize=True), model="test-tiny", steps=2, window=32,
                         overlap=0, device="cpu", hir=False, precision="fp32")
    events = list(restore(req.replace(compile=True)))
    warnings = [e.message for e in events if isinstance(e, LogEvent) and e.level == "warning"]
    assert any("inductor is unavailable" in m for m in warnings)
    finished = events[-1]
    assert finished.report["compiled"] is False
    np.testing.assert_array_equal(finished.result, run_to_completion(req).result)


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_inductor_compiles_on_cpu_into_the_given_cache(tmp_path, monkeypatch):
    """The real compiler: output equals the eager network's, kernels land in the cache folder."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unset-after-the-test")  # records the original for undo
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    torch._dynamo.reset()
    cfg = ModelConfig(family="adm", model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                      attention_levels=(1,), out_channels=6, num_head_channels=32)
    net = build_tiny(cfg)
    cache = tmp_path / "kernels"
    compiled = EpsDenoiser(compile_network(net, cache_dir=cache), cfg)
    x, t = _inputs(2, size=16)
    torch.testing.assert_close(compiled(x, t), EpsDenoiser(net, cfg)(x, t), atol=1e-4, rtol=1e-4)
    assert compiled.net.fallback_reason is None
    assert any(cache.rglob("*")), "no compiled kernels were written to the cache folder"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_compiled_network_under_cuda_graphs_matches_eager_on_gpu(tmp_path):
    from engine.models.cuda_graphs import GraphedDenoiser
    from engine.models.speed import prepare_network

    torch._dynamo.reset()
    dev = torch.device("cuda", torch.cuda.current_device())
    cfg = tiny_adm_config()
    net = prepare_network(build_tiny(cfg, device=dev), precision="bf16")
    eager = EpsDenoiser(net, cfg, precision="bf16")
    fast = GraphedDenoiser(EpsDenoiser(compile_network(net, cache_dir=tmp_path), cfg, precision="bf16"))
    for batch in (1, 3, 2, 3):
        x, t = (v.to(dev) for v in _inputs(batch))
        ref = eager(x, t)
        assert float((fast(x, t) - ref).norm() / ref.norm()) < 0.02
    assert fast.net.fallback_reason is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_groupnorm_keeps_float32_statistics(dtype):
    """A large mean with a small spread: statistics in 16 bits would lose the spread entirely; the
    half path must equal normalising a float32 copy, up to rounding the output (and γ, β)."""
    from engine.models.attention import GroupNorm32

    torch.manual_seed(0)
    norm = GroupNorm32(4, 8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = 300.0 + torch.randn(2, 8, 6, 6)
    ref = torch.nn.functional.group_norm(x, 4, norm.weight, norm.bias, norm.eps)
    x_half = x.to(dtype)
    ref_half = torch.nn.functional.group_norm(x_half.float(), 4, norm.weight, norm.bias, norm.eps)
    out = norm(x_half)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref_half, atol=0.05, rtol=0.02)
    assert float((out.float() - ref).std()) < 0.7 * float(ref.std())  # the spread survived (x_half's own rounding aside)
