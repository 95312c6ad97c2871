"""MSR orchestrator: wavefront == raster order, batching/OOM splitting, events, cancel, oracle exactness."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.errors import Cancelled, OutOfMemory
from engine.events import LogEvent, PlanEvent, ProgressEvent, WindowFinished, WindowStarted
from engine.operators.base import Operator
from engine.request import Quirks
from engine.samplers import OracleDenoiser, make_schedule
from engine.tiling.msr import MsrStage, Progress, SamplingSettings
from engine.tiling.problem import ObservedProblem
from engine.tiling.window_plan import plan_windows



# ---------------------------------------------------------------------------- local test doubles
class KeepMask(Operator):
    """A = keep ⊙ x (keep: (1, 1, H, W), 1 = observed)."""

    def __init__(self, keep):
        self.keep = keep

    def A(self, x):
        return self.keep * x

    def A_pinv(self, y):
        return self.keep * y

    def restrict(self, box):
        rows, cols = box.slices()
        return KeepMask(self.keep[..., rows, cols])


class Pool(Operator):
    def __init__(self, s):
        self.scale = s

    def A(self, x):
        return F.avg_pool2d(x, self.scale)

    def A_pinv(self, y):
        return y.repeat_interleave(self.scale, -2).repeat_interleave(self.scale, -1)


class Gray(Operator):
    def A(self, x):
        return x.mean(1, keepdim=True)

    def A_pinv(self, y):
        return y.repeat(1, 3, 1, 1)


class Chain(Operator):
    """A = second ∘ first; exact pseudo-inverse for the pixel-local chains used here."""

    def __init__(self, first, second):
        self.first, self.second = first, second
        self.scale = getattr(first, "scale", 1) * getattr(second, "scale", 1)

    def A(self, x):
        return self.second.A(self.first.A(x))

    def A_pinv(self, y):
        return self.first.A_pinv(self.second.A_pinv(y))

    def restrict(self, box):
        inner = box.divided(self.first.scale) if self.first.scale > 1 else box
        return Chain(self.first.restrict(box), self.second.restrict(inner))


class TinyDenoiser:
    """Deterministic and batch-invariant (each sample convolved on its own, so the floating-point
    result cannot depend on the batch size): a fixed 3×3 conv of x_t with a t-dependent gain."""

    image_size = 32
    is_random = True

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.weight = torch.randn(3, 3, 3, 3, generator=g) * 0.2
        self.calls = 0
        self.batch_sizes = []

    def __call__(self, x, t):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        gain = (t.float() / 1000.0).view(-1, 1, 1, 1)
        conv = torch.cat([F.conv2d(x[i : i + 1], self.weight, padding=1) for i in range(x.shape[0])])
        return torch.tanh(conv) * (0.5 + gain)


class GlobalOracle:
    """Position-aware oracle: for each batch of windows, the true ε of the clean image's crops."""

    image_size = 32
    is_random = False

    def __init__(self, x_star):
        self.x_star = x_star

    def for_windows(self, boxes):
        rows = [self.x_star[0, :, b.top : b.bottom, b.left : b.right] for b in boxes]
        return OracleDenoiser(torch.stack(rows))


def smooth_image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, max(h // 8, 2), max(w // 8, 2), generator=g) * 1.6 - 0.8
    img = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    return (img + 0.05 * torch.randn(1, 3, h, w, generator=g)).clamp(-0.95, 0.95)


def make_stage(problem, plan, denoiser, *, steps=3, cap=100, seed=7, quirks=Quirks(), **kw):
    schedule = make_schedule(steps)
    settings = SamplingSettings(schedule=schedule, eta=0.85, seed=seed, quirks=quirks)
    progress = Progress(total=schedule.num_calls * len(plan.boxes))
    return MsrStage(problem=problem, plan=plan, denoiser=denoiser, settings=settings, progress=progress, batch_cap=cap, **kw)


def run(stage):
    """Drain a stage (or an event generator); return (its return value, the events)."""
    events = []
    gen = stage.run() if hasattr(stage, "run") else stage
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events


def masked_problem(h=96, w=80, seed=1):
    g = torch.Generator().manual_seed(seed)
    keep = (torch.rand(1, 1, h, w, generator=g) > 0.4).float()
    x = smooth_image(h, w, seed)
    op = KeepMask(keep)
    return ObservedProblem(op, op.A(x), h, w), x


def sequential(plan):
    """The same plan run one window at a time in raster order (each window its own level)."""
    return plan._replace(levels=tuple(range(len(plan.boxes))))


# ---------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("height, width, n_windows", [(96, 80, 20), (88, 92, 25)])
def test_wavefront_equals_raster_sequential(height, width, n_windows):
    problem, _ = masked_problem(height, width)
    plan = plan_windows(height, width, 32, 16, 1)  # 5 × 4; 5 × 5 with snapped last row and column
    wave_stage = make_stage(problem, plan, TinyDenoiser())
    wave, _ = run(wave_stage)
    seq_stage = make_stage(problem, sequential(plan), TinyDenoiser(), cap=1)
    seq, _ = run(seq_stage)
    np.testing.assert_array_equal(wave.pixels, seq.pixels)
    assert wave.written.all()
    assert seq_stage.progress.batches == len(plan.boxes) == n_windows
    # overlapping windows ran in one batch (anti-diagonals), and still nothing changed
    assert wave_stage.progress.batches == plan.num_levels < len(plan.boxes)
    assert any(
        plan.levels[a] == plan.levels[b] and plan.boxes[a].intersects(plan.boxes[b])
        for a in range(len(plan.boxes)) for b in range(a)
    )


def test_batching_does_not_change_the_result():
    problem, _ = masked_problem()
    plan = plan_windows(96, 80, 32, 16, 1)
    results = [run(make_stage(problem, plan, TinyDenoiser(), cap=cap))[0].pixels for cap in (1, 2, 100)]
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_1024_square_needs_13_batches_instead_of_49():
    h = w = 1024
    op = KeepMask(torch.ones(1, 1, h, w))
    problem = ObservedProblem(op, torch.zeros(1, 3, h, w), h, w)
    plan = plan_windows(h, w, 256, 128, 1)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    wave = make_stage(problem, plan, zero, steps=1)
    run(wave)
    seq = make_stage(problem, sequential(plan), zero, steps=1, cap=1)
    run(seq)
    assert (len(plan.boxes), wave.progress.batches, seq.progress.batches) == (49, 13, 49)


def test_seed_changes_the_result_and_fixed_seed_repeats():
    problem, _ = masked_problem()
    plan = plan_windows(96, 80, 32, 16, 1)
    a = run(make_stage(problem, plan, TinyDenoiser(), seed=1))[0].pixels
    b = run(make_stage(problem, plan, TinyDenoiser(), seed=1))[0].pixels
    c = run(make_stage(problem, plan, TinyDenoiser(), seed=2))[0].pixels
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).max() > 100


class OomAboveTwo(TinyDenoiser):
    def __call__(self, x, t):
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return super().__call__(x, t)


def test_out_of_memory_splits_and_gives_the_same_result():
    problem, _ = masked_problem(96, 96)
    plan = plan_windows(96, 96, 32, 16, 1)  # 5×5, levels with up to 3 windows
    reference, _ = run(make_stage(problem, plan, TinyDenoiser()))
    den = OomAboveTwo()
    stage = make_stage(problem, plan, den, cap=8)
    canvas, events = run(stage)
    np.testing.assert_array_equal(canvas.pixels, reference.pixels)
    assert any(isinstance(e, LogEvent) and "out of memory" in e.message for e in events)
    assert max(den.batch_sizes) <= 2 and stage.batch_cap <= 2
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert progress[-1].done == progress[-1].total  # retried calls are not double counted


def test_out_of_memory_on_one_window_raises_engine_error():
    problem, _ = masked_problem()
    plan = plan_windows(96, 80, 32, 16, 1)

    def always_oom(x, t):
        raise torch.OutOfMemoryError("fake")

    with pytest.raises(OutOfMemory):
        run(make_stage(problem, plan, always_oom))


def test_events_plan_windows_progress_preview():
    problem, _ = masked_problem()
    plan = plan_windows(96, 80, 32, 16, 1)
    _, events = run(make_stage(problem, plan, TinyDenoiser(), steps=2))
    assert isinstance(events[0], PlanEvent) and events[0].boxes == plan.boxes and events[0].levels == plan.levels
    started = [e.index for e in events if isinstance(e, WindowStarted)]
    finished = [e for e in events if isinstance(e, WindowFinished)]
    assert sorted(started) == sorted(e.index for e in finished) == list(range(len(plan.boxes)))
    for e in finished:
        assert e.pixels.shape == (e.box.height, e.box.width, 3) and e.pixels.dtype == np.float32
        assert 0.0 <= e.pixels.min() and e.pixels.max() <= 1.0
    # every window starts after the windows that write pixels of its box (their owners) finished
    order = {e.index: k for k, e in enumerate(events) if isinstance(e, WindowFinished)}
    start_pos = {e.index: k for k, e in enumerate(events) if isinstance(e, WindowStarted)}
    owner = np.full((96, 80), -1)
    for i, bi in enumerate(plan.boxes):
        region = owner[bi.slices()]
        for j in set(np.unique(region).tolist()) - {-1}:
            assert order[j] < start_pos[i]
        region[region < 0] = i
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert progress[-1].done == progress[-1].total == 2 * len(plan.boxes)
    previews = progress[0].preview()
    assert previews and previews[0].shape == (32, 32, 3)


def test_cancel_keeps_finished_windows_and_checkpoints():
    problem, _ = masked_problem()
    plan = plan_windows(96, 80, 32, 16, 1)
    cancel = threading.Event()
    saved = []
    stage = make_stage(problem, plan, TinyDenoiser(), cap=1, cancel=cancel,
                       checkpoint=lambda st: saved.append(set(st.finished)))
    gen = stage.run()
    finished = 0
    with pytest.raises(Cancelled):
        for event in gen:
            if isinstance(event, WindowFinished):
                finished += 1
                if finished == 3:
                    cancel.set()
    assert len(stage.finished) == 3 and saved[-1] == stage.finished
    for i in stage.finished:
        rows, cols = plan.boxes[i].slices()
        assert stage.canvas.written[rows, cols].all()
    assert not stage.canvas.written.all()


def test_carry_state_quirk_runs_sequentially_and_changes_the_result():
    problem, _ = masked_problem()
    plan = plan_windows(96, 80, 32, 16, 1)
    plain, _ = run(make_stage(problem, plan, TinyDenoiser()))
    den = TinyDenoiser()
    stage = make_stage(problem, plan, den, quirks=Quirks(carry_state_across_windows=True))
    carried, _ = run(stage)
    assert set(den.batch_sizes) == {1} and stage.progress.batches == len(plan.boxes)
    first = plan.boxes[0].slices()
    np.testing.assert_array_equal(plain.pixels[first], carried.pixels[first])  # window 0 starts from noise
    assert not np.array_equal(plain.pixels, carried.pixels)


@pytest.mark.parametrize("kind", ["inpaint", "sr2", "sr4", "colorize", "composite"])
def test_oracle_msr_returns_the_clean_image(kind):
    h, w = 96, 128
    x = smooth_image(h, w, seed=3)
    keep = (torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    op, align = {
        "inpaint": (KeepMask(keep), 1),
        "sr2": (Pool(2), 2),
        "sr4": (Pool(4), 4),
        "colorize": (Gray(), 1),
        "composite": (Chain(Pool(2), Chain(Gray(), KeepMask(keep[..., ::2, ::2]))), 2),
    }[kind]
    problem = ObservedProblem(op, op.A(x), h, w)
    plan = plan_windows(h, w, 32, 16, align)
    canvas, _ = run(make_stage(problem, plan, GlobalOracle(x), steps=4))
    result = torch.from_numpy(canvas.to_float()).permute(2, 0, 1)[None] * 2 - 1
    assert (result - x).abs().max() < 1e-4
    # and the observation is reproduced
    assert (op.A(result) - op.A(x)).abs().max() < 1e-4


def test_known_pixels_are_imposed_on_later_windows():
    """A denoiser that predicts a different image per window still gives one seamless canvas:
    the overlap of a later window equals what the earlier window wrote."""
    h, w = 64, 64
    op = KeepMask(torch.zeros(1, 1, h, w))  # nothing observed: only the overlap constrains
    problem = ObservedProblem(op, torch.zeros(1, 3, h, w), h, w)
    plan = plan_windows(h, w, 32, 16, 1)
    x_a, x_b = smooth_image(h, w, 1), smooth_image(h, w, 2)

    class Alternating:
        def for_windows(self, boxes):
            stars = [(x_a if (b.top // 16 + b.left // 16) % 2 == 0 else x_b)[0, :, b.top : b.bottom, b.left : b.right] for b in boxes]
            return OracleDenoiser(torch.stack(stars))

    stage = make_stage(problem, plan, Alternating(), steps=3)
    canvas, events = run(stage)
    finished = {e.index: e.pixels for e in events if isinstance(e, WindowFinished)}
    window1 = plan.boxes[1]  # (0, 16): overlaps window 0 on columns 16..31
    assert np.array_equal(finished[1][:, :16], finished[0][:, 16:])
    assert window1.left == 16


def test_batch_size_plan():
    from engine.tiling.memory import is_out_of_memory, plan_batch_size, window_bytes

    cpu = torch.device("cpu")
    assert plan_batch_size(3, cpu, 256, 256) == 3
    budget = 5 * window_bytes(256, 256, "fp32")
    assert plan_batch_size("auto", cpu, 256, 256, "fp32", budget_bytes=budget) == 5
    assert plan_batch_size("auto", cpu, 256, 256, "fp16", budget_bytes=budget) == 10
    assert plan_batch_size("auto", cpu, 256, 256, budget_bytes=1.0) == 1
    assert plan_batch_size("auto", cpu, 256, 256) >= 1
    assert is_out_of_memory(torch.OutOfMemoryError("x")) and not is_out_of_memory(ValueError("x"))
