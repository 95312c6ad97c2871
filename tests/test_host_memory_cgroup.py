"""The memory check sees the limits of containers and systemd slices (cgroup v1 and v2), read from
fake /proc and /sys trees."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine.host_memory as host_memory
from engine.errors import InputError

GB = 10**9
V1_NO_LIMIT = "9223372036854771712"  # what the kernel writes when there is none


def tree(root: Path, cgroup: str, files: dict[str, str]) -> Path:
    """``root``/proc/self/cgroup holding ``cgroup``, and ``files`` under ``root``/sys/fs/cgroup."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        path = root / "sys/fs/cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def test_v2_room_is_the_limit_less_the_usage(tmp_path):
    tree(tmp_path, "0::/\n", {"memory.max": str(4 * GB), "memory.current": str(GB)})  # a container
    assert host_memory.cgroup_room(tmp_path) == 3 * GB


def test_v2_limits_of_the_enclosing_groups_count_and_the_tightest_wins(tmp_path):
    tree(tmp_path, "0::/user.slice/app.scope\n", {
        "user.slice/app.scope/memory.max": "max", "user.slice/app.scope/memory.current": str(GB),
        "user.slice/memory.max": str(3 * GB), "user.slice/memory.current": str(2 * GB),
        "memory.stat": "anon 1\n",  # the root group has no limit files
    })
    assert host_memory.cgroup_room(tmp_path) == GB
    (tmp_path / "sys/fs/cgroup/user.slice/app.scope/memory.max").write_text(str(GB + GB // 2))
    assert host_memory.cgroup_room(tmp_path) == GB // 2


def test_reclaimable_file_cache_does_not_count_as_used(tmp_path):
    tree(tmp_path, "0::/box\n", {"box/memory.max": str(4 * GB), "box/memory.current": str(3 * GB),
                                 "box/memory.stat": f"anon {GB}\nfile {2 * GB}\ninactive_file {2 * GB}\n"})
    assert host_memory.cgroup_room(tmp_path) == 3 * GB


def test_v2_without_a_limit_gives_none(tmp_path):
    tree(tmp_path, "0::/user.slice\n", {"user.slice/memory.max": "max", "user.slice/memory.current": str(GB)})
    assert host_memory.cgroup_room(tmp_path) is None


def test_v1_memory_controller(tmp_path):
    cgroup = "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n"
    tree(tmp_path, cgroup, {
        "memory/docker/abc/memory.limit_in_bytes": str(2 * GB),
        "memory/docker/abc/memory.usage_in_bytes": str(GB),
        "memory/docker/abc/memory.stat": f"inactive_file 5\ntotal_inactive_file {GB // 2}\n",
        "memory/memory.limit_in_bytes": V1_NO_LIMIT, "memory/memory.usage_in_bytes": str(20 * GB),
    })
    assert host_memory.cgroup_room(tmp_path) == GB + GB // 2
    (tmp_path / "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes").write_text(V1_NO_LIMIT)
    assert host_memory.cgroup_room(tmp_path) is None


@pytest.mark.parametrize("cgroup, files", [
    (None, {}),  # no /proc: Windows, macOS
    ("0::/gone\n", {}),  # no /sys/fs/cgroup files
    ("garbage without colons\n\x00", {"memory.max": "12"}),
    ("0::/\n", {"memory.max": "lots", "memory.current": "1"}),
    ("0::/\n", {"memory.max": str(GB)}),  # no usage: no estimate
])
def test_odd_or_missing_cgroup_files_give_none(tmp_path, cgroup, files):
    if cgroup is not None:
        tree(tmp_path, cgroup, files)
    assert host_memory.cgroup_room(tmp_path) is None


def test_a_usage_above_the_limit_leaves_no_room(tmp_path):
    tree(tmp_path, "0::/\n", {"memory.max": str(GB), "memory.current": str(2 * GB)})
    assert host_memory.cgroup_room(tmp_path) == 0


def test_available_is_the_least_of_the_computer_and_the_cgroup(tmp_path, monkeypatch):
    monkeypatch.setattr(host_memory, "_system_available", lambda: 16 * GB)
    assert host_memory.available_bytes(tmp_path) == 16 * GB  # no cgroup files
    tree(tmp_path, "0::/\n", {"memory.max": str(3 * GB), "memory.current": str(GB)})
    assert host_memory.available_bytes(tmp_path) == 2 * GB
    monkeypatch.setattr(host_memory, "_system_available", lambda: None)
    assert host_memory.available_bytes(tmp_path) == 2 * GB


def test_the_photo_check_refuses_what_the_container_cannot_hold(tmp_path, monkeypatch):
    tree(tmp_path, "0::/\n", {"memory.max": str(3 * GB), "memory.current": str(GB)})
    monkeypatch.setattr(host_memory, "_system_available", lambda: 64 * GB)
    real = host_memory.available_bytes
    monkeypatch.setattr(host_memory, "available_bytes", lambda: real(tmp_path))
    host_memory.check_fits(10_000, 5_000, 32)  # 1.6 GB
    with pytest.raises(InputError, match="needs about 3.2 GB, but only 2 GB is available"):
        host_memory.check_fits(10_000, 10_000, 32)
