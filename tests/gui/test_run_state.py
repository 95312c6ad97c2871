"""The progress the app keeps for its runs (gui.run.state): one state folder per photo, removed
when a run finishes, kept when it stops, never pruned while in use, pruned when old or too big."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.events import FinishedEvent, LogEvent, WindowFinished
from engine.geometry import Box
from engine.request import RestoreRequest, Tasks
from gui.run import state as run_state
from gui.run.state import StateLock, keeping_progress, prune, runs_root, state_folder

DAY = 86400.0


def request(seed: int = 0) -> RestoreRequest:
    image = np.random.default_rng(seed).random((16, 16, 3), dtype=np.float32)
    return RestoreRequest(image=image, tasks=Tasks(colorize=True))


def saving_restore(seen: list):
    """A stand-in for the engine: writes a state file where the request says, then finishes."""

    def restore(req, cancel):
        seen.append(req.resume_dir)
        if req.resume_dir:
            (state_folder(req.image) / "state.json").write_text("{}")
        try:
            yield WindowFinished(0, Box(0, 0, 16, 16), np.zeros((16, 16, 3), np.float32))
            yield FinishedEvent(np.zeros((16, 16, 3), np.float32), {})
        except GeneratorExit:  # the engine saves its finished windows now: still under the lock
            seen.append(("closed, locked", run_state.held_here(state_folder(req.image))))
            raise

    return restore


def make_state(root, name: str, size: int, age_days: float, now: float):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "restore.npy").write_bytes(b"x" * size)
    stamp = now - age_days * DAY
    for path in (folder / "restore.npy", folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_the_state_lives_in_the_user_cache_one_folder_per_photo(monkeypatch):
    import platformdirs

    monkeypatch.delenv(run_state.RUNS_DIR_ENV)
    assert runs_root() == Path(platformdirs.user_cache_dir("Restorer", appauthor=False)) / "runs"
    a, b = request(0), request(1)
    assert state_folder(a.image) == state_folder(a.image.copy()), "the pixels name the folder"
    assert state_folder(a.image) != state_folder(b.image)
    assert state_folder(a.image) == state_folder(a.replace(seed=7).image), "settings do not: the engine decides"


def test_a_finished_run_removes_its_state_and_a_stopped_one_keeps_it():
    seen: list = []
    req = request()
    folder = state_folder(req.image)
    events = keeping_progress(saving_restore(seen))(req, threading.Event())
    next(events)  # the first window: the run is under way
    assert seen == [str(folder)] and (folder / "state.json").exists()
    events.close()  # Cancel: the app stops reading
    assert seen[-1] == ("closed, locked", True)
    assert (folder / "state.json").exists(), "kept for the next run"
    again = StateLock.take(folder)
    assert again is not None, "and no longer locked"
    again.release()

    list(keeping_progress(saving_restore(seen))(req, threading.Event()))
    assert not folder.exists(), "the result is complete: nothing to continue"


def test_a_result_that_arrives_after_cancel_keeps_the_state():
    """The app drops a result that arrives after Cancel, so its windows must stay on disk."""
    cancel = threading.Event()
    req = request()
    events = keeping_progress(saving_restore([]))(req, cancel)
    for event in events:
        if isinstance(event, FinishedEvent):
            cancel.set()
    assert (state_folder(req.image) / "state.json").exists()


def cancelled() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


def test_a_new_run_waits_for_the_cancelled_run_of_the_same_photo():
    req = request()
    held = StateLock.take(state_folder(req.image), cancelled())  # the cancelled run, still in its last model call
    seen: list = []
    events = keeping_progress(saving_restore(seen))(req, threading.Event())
    first = next(events)
    assert isinstance(first, LogEvent) and "waiting" in first.message and seen == []
    held.release()
    assert isinstance(next(events), WindowFinished) and seen == [str(state_folder(req.image))]


def test_cancel_while_waiting_ends_the_run():
    req = request()
    held = StateLock.take(state_folder(req.image), cancelled())
    cancel = threading.Event()
    seen: list = []
    events = keeping_progress(saving_restore(seen))(req, cancel)
    next(events)  # waiting
    cancel.set()
    assert list(events) == [] and seen == []
    held.release()


def test_a_photo_another_window_of_this_app_is_restoring_runs_without_waiting_or_keeping_progress():
    """Two windows restoring the same photo: the second does not wait for the whole first run."""
    req = request()
    running = StateLock.take(state_folder(req.image), threading.Event())  # the first window's run, going on
    try:
        seen: list = []
        events = list(keeping_progress(saving_restore(seen))(req, threading.Event()))
    finally:
        running.release()
    assert seen == [None] and "another Restorer window" in events[0].message
    assert isinstance(events[-1], FinishedEvent)


def test_a_run_that_takes_the_lock_while_a_finished_run_deletes_the_state_stays_recorded(monkeypatch):
    """The finished run deletes the folder under its lock, then lets go; a waiting run that takes
    the lock in between keeps it: still locked, still this process's, never pruned."""
    folder = state_folder(request().image)
    finishing = StateLock.take(folder)
    (folder / "state.json").write_text("{}")
    rmtree, waiting = run_state.shutil.rmtree, []

    def then_the_waiting_run_takes_it(path, **kwargs):
        rmtree(path, **kwargs)
        waiting.append(StateLock.take(folder, threading.Event()))

    monkeypatch.setattr(run_state.shutil, "rmtree", then_the_waiting_run_takes_it)
    finishing.remove_folder()
    monkeypatch.undo()
    lock = waiting[0]
    try:
        assert lock is not None and run_state.held_here(folder)
        assert StateLock.take(folder) is None, "still locked"
        assert prune(now=time.time() + (run_state.MAX_AGE_DAYS + 1) * DAY) == [] and folder.exists()
    finally:
        lock.release()
    assert not run_state.held_here(folder)


@pytest.mark.skipif(os.name == "nt", reason="an open file cannot be deleted there")
def test_a_lock_won_on_a_deleted_lock_file_is_taken_again_on_the_folder_s_own(monkeypatch):
    """The waiting run opened the lock file just before the finished run deleted the folder and
    let go: its lock on the deleted file would lock nothing, so it takes the new file's."""
    folder = state_folder(request().image)
    finishing = StateLock.take(folder)
    os_lock, deleted = run_state._os_lock, []

    def the_finished_run_lets_go_first(handle, lock):
        if lock and not deleted:
            deleted.append(True)
            finishing.remove_folder()
        os_lock(handle, lock)

    monkeypatch.setattr(run_state, "_os_lock", the_finished_run_lets_go_first)
    lock = StateLock.take(folder)
    monkeypatch.undo()
    try:
        assert deleted and lock is not None
        assert StateLock.take(folder) is None, "the folder's lock file is the one locked"
    finally:
        lock.release()


@pytest.mark.skipif(os.name == "nt", reason="simulates another process with flock")
def test_a_photo_another_process_is_restoring_runs_without_keeping_progress():
    import fcntl

    req = request()
    folder = state_folder(req.image)
    folder.mkdir(parents=True)
    with open(folder / run_state.LOCK_FILE, "a+b") as other:  # not this process's lock table
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        seen: list = []
        events = list(keeping_progress(saving_restore(seen))(req, threading.Event()))
    assert seen == [None] and "another Restorer window" in events[0].message
    assert isinstance(events[-1], FinishedEvent)


def test_a_cache_that_cannot_be_written_runs_without_keeping_progress(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(run_state.RUNS_DIR_ENV, str(blocker / "runs"))
    seen: list = []
    events = list(keeping_progress(saving_restore(seen))(request(), threading.Event()))
    assert seen == [None] and "cannot be kept" in events[0].message and isinstance(events[-1], FinishedEvent)


def test_a_state_that_cannot_be_written_warns_once_and_the_run_goes_on(monkeypatch):
    """Full disk, read-only cache: the progress the user did not ask for is given up, the run is not."""
    from engine.pipeline import restore
    from engine.tiling import resume
    from tests.test_msr import TinyDenoiser
    from tests.test_resume import make_request

    def disk_full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(resume, "atomic_write", disk_full)
    req = make_request(hir=False)  # several levels: a save is tried after each
    run = keeping_progress(lambda r, cancel: restore(r, cancel, denoiser=TinyDenoiser()))
    events = list(run(req, threading.Event()))
    warnings = [e.message for e in events if isinstance(e, LogEvent) and "progress" in e.message]
    assert len(warnings) == 1 and "No space left on device" in warnings[0] and "goes on" in warnings[0]
    assert isinstance(events[-1], FinishedEvent) and not state_folder(req.image).exists()


def test_a_stopped_run_keeps_its_mask_and_a_run_without_one_drops_it():
    from engine.pipeline import restore
    from tests.test_msr import TinyDenoiser
    from tests.test_resume import make_request

    def stopped_after_two_windows(req):
        run = keeping_progress(lambda r, cancel: restore(r, cancel, denoiser=TinyDenoiser()))
        events = run(req, threading.Event())
        finished = 0
        for event in events:
            finished += isinstance(event, WindowFinished)
            if finished == 2:
                break
        events.close()  # Cancel: the engine saves the windows finished so far

    masked = make_request(hir=False)
    mask = np.where(masked.mask, np.uint8(255), np.uint8(0))  # the app's masks
    stopped_after_two_windows(masked.replace(mask=mask))
    windows, saved = run_state.saved_progress(masked.image)
    assert windows >= 1 and saved is not None
    np.testing.assert_array_equal(saved, mask)
    stopped_after_two_windows(masked.replace(mask=None, tasks=Tasks(colorize=True)))
    windows, saved = run_state.saved_progress(masked.image)
    assert windows >= 1 and saved is None


def test_pruning_removes_old_states_only_and_never_one_in_use():
    root, now = runs_root(), time.time()
    old = make_state(root, "old", 10, age_days=run_state.MAX_AGE_DAYS + 1, now=now)
    recent = make_state(root, "recent", 10, age_days=run_state.MAX_AGE_DAYS - 1, now=now)
    running = make_state(root, "running", 10, age_days=run_state.MAX_AGE_DAYS + 30, now=now)
    (root / "stray.txt").write_text("not a state")
    lock = StateLock.take(running)
    try:
        assert prune(root, now=now) == [old]
    finally:
        lock.release()
    assert not old.exists() and recent.exists() and running.exists()
    assert (recent / "restore.npy").exists(), "a kept state is untouched"


def test_pruning_keeps_the_most_recently_used_states_within_the_size_budget(monkeypatch):
    monkeypatch.setattr(run_state, "MAX_TOTAL_BYTES", 250)
    root, now = runs_root(), time.time()
    newest = make_state(root, "newest", 100, age_days=1, now=now)
    middle = make_state(root, "middle", 100, age_days=2, now=now)
    oldest = make_state(root, "oldest", 100, age_days=3, now=now)
    assert prune(root, now=now) == [oldest]
    assert newest.exists() and middle.exists()


def test_a_continued_state_counts_as_recently_used():
    req = request()
    folder = state_folder(req.image)
    folder.mkdir(parents=True)
    stamp = time.time() - (run_state.MAX_AGE_DAYS + 1) * DAY
    for name in ("state.json", run_state.LOCK_FILE):  # left by a run two weeks ago
        (folder / name).write_text("{}")
        os.utime(folder / name, (stamp, stamp))
    os.utime(folder, (stamp, stamp))
    during = []

    def restore(r, cancel):
        during.append(prune())  # another window starting a run meanwhile
        yield from ()

    list(keeping_progress(restore)(req, threading.Event()))
    assert during == [[]], "in use"
    assert prune() == [] and folder.exists(), "and used just now"


def test_prune_without_a_cache_folder_does_nothing(tmp_path):
    assert prune(tmp_path / "missing") == []


def test_the_app_prunes_old_states_when_it_starts(tmp_path, make_photo, qapp):
    import main
    from window_helpers import write_photo

    old = make_state(runs_root(), "old", 10, age_days=run_state.MAX_AGE_DAYS + 1, now=time.time())
    write_photo(tmp_path / "start.png", make_photo(16, 16))
    assert main.main(["--quit-after-start", str(tmp_path / "start.png")]) == 0
    for thread in threading.enumerate():
        if thread.name == "prune-run-states":
            thread.join(30)
    assert not old.exists()


def test_the_tiles_of_a_blended_stage_count_towards_the_size_budget(monkeypatch):
    monkeypatch.setattr(run_state, "MAX_TOTAL_BYTES", 5000)  # a folder entry itself may count 4096
    root, now = runs_root(), time.time()
    newest = make_state(root, "newest", 100, age_days=1, now=now)
    tiled = make_state(root, "tiled", 10, age_days=2, now=now)
    (tiled / "upscale").mkdir()
    (tiled / "upscale" / "tile.0.npy").write_bytes(b"x" * 8000)  # the fast upscale's finished tiles
    stamp = now - 2 * DAY
    for path in (tiled / "upscale" / "tile.0.npy", tiled / "upscale", tiled):
        os.utime(path, (stamp, stamp))
    assert prune(root, now=now) == [tiled] and newest.exists()
