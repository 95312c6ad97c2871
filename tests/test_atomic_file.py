"""engine.atomic_file: complete-or-nothing writes with the permissions of a plain open()."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
import torch

from engine.atomic_file import atomic_write

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture
def umask():
    """Set the process umask for one test (and restore it)."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_new_file_gets_0666_minus_umask(tmp_path, umask, mask, expected):
    umask(mask)
    with atomic_write(tmp_path / "sub" / "new.bin") as handle:
        handle.write(b"data")
    assert (tmp_path / "sub" / "new.bin").read_bytes() == b"data"
    assert mode(tmp_path / "sub" / "new.bin") == expected


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "photo.png"
    target.write_bytes(b"old")
    for kept in (0o644, 0o600, 0o664):
        os.chmod(target, kept)
        with atomic_write(target) as handle:
            handle.write(b"new")
        assert target.read_bytes() == b"new" and mode(target) == kept


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_bytes(b"original")
    with pytest.raises(RuntimeError, match="power cut"):
        with atomic_write(target) as handle:
            handle.write(b"half")
            raise RuntimeError("power cut")
    assert target.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def _save_image(path):
    from engine.image_io import save_image

    save_image(path.with_suffix(".png"), np.zeros((4, 5, 3), np.float32))
    return path.with_suffix(".png")


def _write_report(path):
    from engine.report import write_report

    write_report(path.with_suffix(".json"), {"a": 1})
    return path.with_suffix(".json")


def _resume_state(path):
    from engine.geometry import Box
    from engine.tiling.canvas import Canvas
    from engine.tiling.resume import STATE_FILE, ResumeState

    ResumeState(path, "fp").save_stage("restore", Canvas(4, 5), {0}, (Box(0, 0, 4, 5),))
    return path / STATE_FILE


def _registry(path):
    from engine.models import catalog

    catalog.write_registry(path, {"version": 1})
    return catalog.registry_path(path)


def _trained_model(path):
    from engine.training.checkpoint_io import write_model

    write_model(path / "m.pt", {"w": torch.zeros(2)}, {"arch": "test"})
    return path / "m.pt"


@pytest.mark.parametrize("write", [_save_image, _write_report, _resume_state, _registry, _trained_model])
def test_every_writer_creates_files_with_the_normal_mode(tmp_path, umask, write):
    umask(0o022)
    written = write(tmp_path / "out")
    assert mode(written) == 0o644
    assert not [p for p in written.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("depth", [1, 3])
def test_a_file_in_place_of_a_folder_is_named(tmp_path, depth):
    (tmp_path / "photo.png").write_bytes(b"x")
    target = tmp_path / "photo.png" / "/".join(["sub"] * (depth - 1)) / "out.png"
    with pytest.raises(NotADirectoryError) as caught:
        with atomic_write(target) as handle:
            handle.write(b"y")
    assert caught.value.strerror == f"{tmp_path / 'photo.png'} is a file, not a folder"
    assert (tmp_path / "photo.png").read_bytes() == b"x"
