"""Fast paths equal the plain path within a stated tolerance, and the benchmark runs end to end."""

import numpy as np
import pytest
import torch

from engine.benchmark import BASELINE, KERNEL_CATEGORIES, HostRoundTrip, fast_path, make_denoiser, run_benchmark
from engine.models.speed import prepare_network
from engine.models.tiny import build_tiny, tiny_adm_config, tiny_ddpm_config
from engine.models.wrappers import EpsDenoiser
from engine.pipeline import run_to_completion
from engine.request import RestoreRequest, Tasks

CPU = torch.device("cpu")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _inputs(device, batch=2, size=32):
    g = torch.Generator(device="cpu").manual_seed(3)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    t = torch.tensor([900, 40][:batch], device=device)
    return x, t


@pytest.mark.parametrize("config", [tiny_adm_config, tiny_ddpm_config])
def test_channels_last_equals_plain(config):
    cfg = config()
    net = build_tiny(cfg)
    plain = EpsDenoiser(net, cfg)
    fast = EpsDenoiser(prepare_network(net, channels_last=True), cfg, channels_last=True)
    x, t = _inputs(CPU)
    torch.testing.assert_close(fast(x, t), plain(x, t), atol=1e-5, rtol=1e-4)


def test_prepare_network_never_changes_the_original():
    cfg = tiny_adm_config()
    net = build_tiny(cfg)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    prepared = prepare_network(net, precision="bf16", channels_last=True)
    assert prepared is not net
    for k, v in net.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k]) and v.is_contiguous()
    assert prepare_network(net) is net  # nothing to change: no copy


def test_host_round_trip_is_exact():
    cfg = tiny_adm_config()
    den = EpsDenoiser(build_tiny(cfg), cfg)
    x, t = _inputs(CPU)
    assert torch.equal(HostRoundTrip(den)(x, t), den(x, t))


def test_bf16_autocast_close_to_fp32_on_cpu():
    cfg = tiny_adm_config()
    net = build_tiny(cfg)
    x, t = _inputs(CPU)
    ref = EpsDenoiser(net, cfg)(x, t)
    low = EpsDenoiser(net, cfg, precision="bf16")(x, t)
    assert low.dtype == torch.float32
    rel = (low - ref).norm() / ref.norm()
    assert rel < 0.05, float(rel)


def test_fast_and_baseline_paths_give_the_same_restoration():
    """The benchmark's two paths restore the same job to the same image (fp32 here, so exactly
    the same up to float reordering): only the speed differs."""
    cfg = tiny_adm_config()
    net = build_tiny(cfg)
    image = np.random.default_rng(0).random((16, 24, 3)).astype(np.float32)
    req = RestoreRequest(image=image, tasks=Tasks(sr=4), model="bench", steps=2, window=32, overlap=16,
                         tiling="msr", hir=False, device="cpu", seed=5)
    fast = run_to_completion(req.replace(batch=4), denoiser=make_denoiser(net, cfg, fast_path("fp32", 4, True), 32))
    base = run_to_completion(req.replace(batch=1), denoiser=make_denoiser(net, cfg, BASELINE, 32))
    # float reordering (batched convolutions sum in another order) moves a rare pixel by ~2e-4
    np.testing.assert_allclose(fast.result, base.result, atol=1e-3)
    assert float(np.abs(fast.result - base.result).mean()) < 1e-5
    assert fast.report["batches"] < base.report["batches"]


def test_benchmark_runs_at_a_tiny_size_on_cpu():
    lines = []
    res = run_benchmark(config="tiny", device=CPU, precision="fp32", batch=2, output_size=128, window=64, steps=2,
                        travel=(1, 2), unet_iters=1, baseline_windows=2, latency_batches=(1, 3), profile=True,
                        log=lines.append)
    assert res["tflop_per_window_step"] > 0 and res["first_call_s"] > 0
    assert set(res["ms_per_call"]) == {1, 3} and all(ms > 0 for ms in res["ms_per_call"].values())
    kinds = res["profile"]["ms_per_call"]
    assert kinds["convolution"] > 0 and set(kinds) <= {k for k, _ in KERNEL_CATEGORIES} | {"other"}
    assert res["profile"]["top"] and any("convolution" in line for line in lines)
    jobs = res["end_to_end"]
    assert len(jobs) == 2
    for entry in jobs.values():
        assert entry["fast"]["windows"] == 9 and not entry["fast"]["extrapolated"]
        assert entry["fast"]["levels"] == 3 + 3 - 1  # 3×3 windows: 5 anti-diagonals
        assert entry["baseline"]["windows_measured"] == 2 and entry["baseline"]["extrapolated"]
        assert entry["speedup"] > 0
    assert any("speed-up" in line for line in lines)


@CUDA
@pytest.mark.gpu
def test_bf16_half_weights_close_to_fp32_on_gpu():
    dev = torch.device("cuda", torch.cuda.current_device())
    cfg = tiny_adm_config()
    net = build_tiny(cfg, device=dev)
    x, t = _inputs(dev)
    ref = EpsDenoiser(net, cfg)(x, t)
    fast = EpsDenoiser(prepare_network(net, precision="bf16", channels_last=True), cfg, precision="bf16",
                       channels_last=True)(x, t)
    assert ((fast - ref).norm() / ref.norm()) < 0.05


@CUDA
@pytest.mark.gpu
def test_sampling_loop_has_no_host_sync_on_gpu():
    from engine.operators import build_operator
    from engine.operators.base import Observation
    from engine.samplers import make_schedule, sample, seeded_generators

    dev = torch.device("cuda", torch.cuda.current_device())
    cfg = tiny_adm_config()
    den = EpsDenoiser(build_tiny(cfg, device=dev), cfg)
    op = build_operator(Tasks(sr=2), height=64, width=64, mask=None, device=dev)
    x_T = torch.randn(2, 3, 64, 64, device=dev)
    y = op.A(torch.rand(2, 3, 64, 64, device=dev) * 2 - 1)
    gens = seeded_generators([1, 2], dev)
    steps = iter(sample(den, x_T, Observation(op, y), make_schedule(5, 1, 1), generators=gens))
    next(steps)  # warm-up outside the check
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in steps:
            pass
    finally:
        torch.cuda.set_sync_debug_mode("default")


@CUDA
@pytest.mark.gpu
def test_cuda_graph_replay_equals_eager():
    from engine.models.cuda_graphs import GraphedDenoiser

    dev = torch.device("cuda", torch.cuda.current_device())
    cfg = tiny_adm_config()
    den = EpsDenoiser(build_tiny(cfg, device=dev), cfg, precision="bf16")
    graphed = GraphedDenoiser(den)
    for batch in (1, 3, 1):
        x, t = _inputs(dev, batch=min(batch, 2))
        x = x[:1].expand(batch, -1, -1, -1).contiguous()
        t = t[:1].expand(batch)
        torch.testing.assert_close(graphed(x, t), den(x, t))
    assert len(graphed._graphs) == 2 and all(g is not None for g in graphed._graphs.values())


def test_graphed_denoiser_passes_through_on_cpu():
    from engine.models.cuda_graphs import GraphedDenoiser

    cfg = tiny_adm_config()
    den = EpsDenoiser(build_tiny(cfg), cfg)
    x, t = _inputs(CPU)
    assert torch.equal(GraphedDenoiser(den)(x, t), den(x, t))


def test_prepare_casts_on_the_host_before_moving_to_the_accelerator():
    """With ``device`` an accelerator (meta stands in here), fp16 weights are cast before the move,
    in place when asked: the accelerator never receives float32 weights."""
    cfg = tiny_adm_config()
    net = build_tiny(cfg)
    moved = prepare_network(net, precision="fp16", device=torch.device("meta"), inplace=True)
    convs = [m for m in moved.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.weight.device.type == "meta" and m.weight.dtype == torch.float16 for m in convs)
    cpu_net = build_tiny(cfg)
    assert prepare_network(cpu_net, precision="bf16", inplace=True) is cpu_net
    assert prepare_network(cpu_net, precision="fp16") is cpu_net  # the CPU keeps fp16 as plain autocast


@CUDA
@pytest.mark.gpu
def test_bf16_model_never_holds_float32_weights_on_the_gpu(tmp_path):
    from engine.models import load_denoiser
    from engine.models.checkpoint import build_model

    dev = torch.device("cuda", torch.cuda.current_device())
    cfg = tiny_adm_config()
    path = tmp_path / "tiny.pt"
    torch.save(build_model(cfg).state_dict(), path)
    fp32_bytes = sum(v.numel() * 4 for v in torch.load(path, weights_only=True).values())
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    den = load_denoiser(str(path), device=dev, precision="bf16")
    assert next(den.net.parameters()).dtype == torch.bfloat16
    assert torch.cuda.max_memory_allocated(dev) - before <= 0.55 * fp32_bytes


def test_sdpa_attention_reaches_the_fused_kernel():
    """With only the fused flash kernel allowed, our attention must still run (3-D or strided inputs
    would need PyTorch's slow unfused path and raise here)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from engine.models.attention import attend, legacy_qkv_attention

    qkv = torch.randn(2, 3 * 2 * 64, 16 * 16)  # (B, 3·H·C, T) as the ADM's qkv convolution makes it
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        fused = legacy_qkv_attention(qkv, num_heads=2, backend="sdpa")
    torch.testing.assert_close(fused, legacy_qkv_attention(qkv, num_heads=2, backend="eager"), atol=1e-5, rtol=1e-4)
    q = torch.randn(4, 10, 64)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        assert attend(q, q, q, "sdpa").shape == (4, 10, 64)
