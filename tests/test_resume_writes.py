"""What a resume state writes: each save only the pixels added since the previous one, and never a
file the state on disk lists, so a crash at any moment leaves the last saved state intact; and a
state that cannot be written never stops the run."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.events import LogEvent
from engine.tiling import resume
from engine.tiling.canvas import Canvas
from engine.tiling.resume import STATE_FILE, ResumeState
from engine.tiling.window_plan import plan_windows
from tests.test_resume import make_request, run_all

#: 15 × 19 windows of 32 px overlapping by 16: 33 wavefront levels.
PLAN = plan_windows(256, 320, 32, 16, 1)
#: 5 × 7 windows, 11 levels: a crash at each of its writes.
SMALL = plan_windows(96, 128, 32, 16, 1)
NPY_HEADER = 128  # np.save's header for a 2-D uint16 array


class Crash(BaseException):
    """The process dies here (not an error the code could handle)."""


def levels_run(state: ResumeState, plan=PLAN):
    """Finish the plan level by level with random windows (each its own, as the sampler's), saving
    after each level as MsrStage does; yields (canvas, finished) after every save."""
    canvas, finished = state.load_stage("restore", plan.padded_height, plan.padded_width, plan.boxes)
    for group in plan.level_groups():
        for i in group:
            if i not in finished:
                noise = torch.rand((3, plan.window_h, plan.window_w), generator=torch.Generator().manual_seed(i))
                canvas.write(plan.boxes[i], noise * 2 - 1)
                finished.add(i)
        state.save_stage("restore", canvas, finished, plan.boxes)
        yield canvas, finished


@pytest.fixture
def file_writes(monkeypatch):
    """Every file resume.py writes, as (name, bytes), and what state.json listed at that moment."""
    writes: list[tuple[str, int, set[str]]] = []
    real = resume.atomic_write

    @contextlib.contextmanager
    def counted(path):
        path = Path(path)
        listed = listed_files(path.parent)
        with real(path) as handle:
            yield handle
        writes.append((path.name, path.stat().st_size, listed))

    monkeypatch.setattr(resume, "atomic_write", counted)
    return writes


def listed_files(folder: Path) -> set[str]:
    """The patches the state.json in ``folder`` lists (none without one)."""
    try:
        data = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        return set()
    return {f"{name}.{n}.npy" for name, info in data["stages"].items() for n, _ in info["patches"]}


def test_a_save_writes_only_the_pixels_added_since_the_last_one(tmp_path, file_writes):
    state, _ = ResumeState.open(tmp_path, "fp")
    written_before, saves = 0, 0
    for canvas, _ in levels_run(state):
        added = int(canvas.written.sum()) - written_before
        written_before += added
        patch, json_file = file_writes[-2:]
        assert patch[0].endswith(".npy") and json_file[0] == STATE_FILE
        assert patch[1] == NPY_HEADER + 6 * added, "the new pixels, each once"
        saves += 1
    canvas_bytes = 6 * PLAN.padded_height * PLAN.padded_width
    total = sum(size for _, size, _ in file_writes)
    assert saves == PLAN.num_levels == 33 and len(file_writes) == 2 * saves
    # the whole run writes the canvas about once (it wrote it once per level: 33 × 491,520 bytes)
    assert total < 1.2 * canvas_bytes, (total, canvas_bytes)


def test_nothing_the_saved_state_lists_is_ever_written_again(tmp_path, file_writes):
    state, _ = ResumeState.open(tmp_path, "fp")
    (tmp_path / ".restore.7.npy.0123456789ab.tmp").write_bytes(b"a write a power cut interrupted")
    for _ in levels_run(state):
        pass
    for name, _, listed in file_writes:
        assert name == STATE_FILE or name not in listed  # state.json itself is replaced atomically
    on_disk = {p.name for p in tmp_path.iterdir()}
    assert on_disk == listed_files(tmp_path) | {STATE_FILE}, "no leftovers"


@pytest.mark.skipif(os.name == "nt", reason="folders are synced on POSIX only")
def test_a_patch_is_durably_named_before_the_state_that_lists_it(tmp_path, monkeypatch):
    steps: list[str] = []
    real_write, real_fsync = resume.atomic_write, os.fsync

    @contextlib.contextmanager
    def recorded(path):
        with real_write(path) as handle:
            yield handle
        steps.append(Path(path).name)

    def fsync(fd):
        steps.append("sync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "sync file")
        real_fsync(fd)

    monkeypatch.setattr(resume, "atomic_write", recorded)
    monkeypatch.setattr(os, "fsync", fsync)
    next(levels_run(ResumeState.open(tmp_path, "fp")[0]))
    assert [s for s in steps if s != "sync file"] == ["restore.0.npy", "sync folder", STATE_FILE]


def snapshots(tmp_path: Path):
    """(pixels on written boxes, written map, finished) after every save of an uninterrupted run."""
    state, _ = ResumeState.open(tmp_path, "fp")
    return [(np.where(c.written[..., None], c.pixels, 0), c.written.copy(), set(f))
            for c, f in levels_run(state, SMALL)]


@pytest.mark.parametrize("when", ["during a write", "right after a write"])
def test_a_crash_at_any_moment_leaves_the_last_saved_state(tmp_path, monkeypatch, when):
    expected = snapshots(tmp_path / "reference")
    real = resume.atomic_write
    for completed in range(when == "right after a write", 2 * len(expected)):  # writes done before the crash
        folder = tmp_path / f"crash{completed}"
        calls = [0]

        @contextlib.contextmanager
        def crashing(path, completed=completed):
            calls[0] += 1
            with real(path) as handle:
                yield handle
                if when == "during a write" and calls[0] == completed + 1:
                    raise Crash  # written, not yet flushed nor renamed
            if when == "right after a write" and calls[0] == completed:
                raise Crash  # renamed; the rest of the save (state.json, the clean-up) never happens

        monkeypatch.setattr(resume, "atomic_write", crashing)
        with pytest.raises(Crash):
            for _ in levels_run(ResumeState.open(folder, "fp")[0], SMALL):
                pass
        monkeypatch.setattr(resume, "atomic_write", real)
        state, warning = ResumeState.open(folder, "fp")
        canvas, finished = state.load_stage("restore", SMALL.padded_height, SMALL.padded_width, SMALL.boxes)
        assert warning is None
        saves = completed // 2  # two writes per save: the patch, then state.json
        if saves == 0:
            assert finished == set() and not canvas.written.any()
        else:
            pixels, written, done = expected[saves - 1]
            assert finished == done, completed
            np.testing.assert_array_equal(canvas.written, written)
            np.testing.assert_array_equal(canvas.pixels, pixels)
        for canvas, finished in levels_run(state, SMALL):  # and the run goes on from there to the same end
            pass
        np.testing.assert_array_equal(canvas.pixels, expected[-1][0])
        assert {p.name for p in folder.iterdir()} == listed_files(folder) | {STATE_FILE}, "no leftovers"


def test_state_of_the_previous_version_starts_fresh_with_a_warning(tmp_path):
    (tmp_path / STATE_FILE).write_text(json.dumps(
        {"version": 1, "fingerprint": "fp", "stages": {"restore": {"finished": [0, 1], "shape": [256, 320]}}}))
    np.save(tmp_path / "restore.npy", np.zeros((256, 320, 3), np.uint16))
    assert ResumeState.saved_windows(tmp_path) == 0, "nothing this version can continue"
    state, warning = ResumeState.open(tmp_path, "fp")
    assert "another version" in warning and state.resumed_windows == 0
    assert not (tmp_path / STATE_FILE).exists()
    next(levels_run(state))
    assert not (tmp_path / "restore.npy").exists(), "the old canvas goes with the first save"


def test_a_canvas_written_in_any_order_comes_back_exactly(tmp_path):
    """Windows saved out of raster order, overlapping in any way, still come back pixel for pixel."""
    plan = plan_windows(96, 96, 32, 24, 1)
    canvas = Canvas(96, 96)
    state, _ = ResumeState.open(tmp_path, "fp")
    order = np.random.default_rng(1).permutation(len(plan.boxes))
    for step in range(0, len(order), 5):
        for i in order[step : step + 5]:
            canvas.write(plan.boxes[i], torch.rand((3, 32, 32)) * 2 - 1)
        state.save_stage("restore", canvas, set(order[: step + 5].tolist()), plan.boxes)
    back, finished = ResumeState.open(tmp_path, "fp")[0].load_stage("restore", 96, 96, plan.boxes)
    assert finished == set(range(len(plan.boxes)))
    np.testing.assert_array_equal(back.pixels, canvas.pixels)
    assert back.written.all()


# ---------------------------------------------------------------- a state that cannot be written
def warnings_of(events) -> list[str]:
    """The warnings besides the test model's "random weights"."""
    return [e.message for e in events if isinstance(e, LogEvent) and e.level == "warning"
            and "random weights" not in e.message]


def test_a_save_that_fails_mid_run_warns_once_and_the_run_goes_on(tmp_path, monkeypatch):
    reference, _ = run_all(make_request(hir=False))
    req = make_request(tmp_path, hir=False)  # 12 windows in 6 levels
    real, writes = resume.atomic_write, [0]

    @contextlib.contextmanager
    def full_after_two_saves(path):
        writes[0] += 1
        if writes[0] > 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        with real(path) as handle:
            yield handle

    monkeypatch.setattr(resume, "atomic_write", full_after_two_saves)
    events, _ = run_all(req)
    np.testing.assert_array_equal(events[-1].result, reference[-1].result)
    saved = ResumeState.saved_windows(tmp_path / "state")
    [warning] = warnings_of(events)
    assert "No space left on device" in warning and "the run goes on" in warning
    assert saved == 3 and "continues from the 3 window(s) saved before" in warning
    monkeypatch.setattr(resume, "atomic_write", real)
    again, den = run_all(req)  # what was saved before the disk filled up is sound
    assert any(isinstance(e, LogEvent) and "resuming: 3 of 12" in e.message for e in again)
    np.testing.assert_array_equal(again[-1].result, reference[-1].result)


def test_a_state_folder_that_cannot_be_made_warns_and_the_run_goes_on(tmp_path):
    reference, _ = run_all(make_request(hir=False))
    (tmp_path / "state").write_text("a file where the folder should be")
    events, _ = run_all(make_request(tmp_path / "state", hir=False))
    [warning] = warnings_of(events)
    assert "cannot be saved" in warning and "starts from the beginning" in warning
    np.testing.assert_array_equal(events[-1].result, reference[-1].result)


def test_windows_saved_on_another_layout_are_not_loaded(tmp_path):
    """Same canvas, other windows: window 1 of one plan is not window 1 of the other."""
    overlapping, side_by_side = plan_windows(64, 96, 32, 16, 1), plan_windows(64, 96, 32, 0, 1)
    canvas = Canvas(64, 96)
    canvas.write(overlapping.boxes[1], torch.rand((3, 32, 32)) * 2 - 1)
    ResumeState.open(tmp_path, "fp")[0].save_stage("restore", canvas, {1}, overlapping.boxes)
    state = ResumeState.open(tmp_path, "fp")[0]
    assert state.load_stage("restore", 64, 96, side_by_side.boxes)[1] == set()
    assert ResumeState.open(tmp_path, "fp")[0].load_stage("restore", 64, 96, overlapping.boxes)[1] == {1}
