"""Window plans are pure geometry: table tests of boxes, snapping, alignment, padding and levels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.geometry import Box
from engine.tiling.window_plan import (
    axis_origins,
    effective_overlap,
    effective_window,
    levels_from_boxes,
    plan_windows,
)


@pytest.mark.parametrize(
    "length, window, stride, expected",
    [
        (256, 256, 128, [0]),
        (384, 256, 128, [0, 128]),
        (1024, 256, 128, [0, 128, 256, 384, 512, 640, 768]),
        (300, 256, 128, [0, 44]),  # last snapped to the border
        (1000, 256, 128, [0, 128, 256, 384, 512, 640, 744]),
        (64, 32, 16, [0, 16, 32]),
        (70, 32, 32, [0, 32, 38]),
    ],
)
def test_axis_origins(length, window, stride, expected):
    assert axis_origins(length, window, stride) == expected


def test_axis_origins_refuses_unpadded_short_axis():
    with pytest.raises(ValueError):
        axis_origins(100, 256, 128)


@pytest.mark.parametrize(
    "height, width, window, overlap, align, n_windows, n_levels",
    [
        (1024, 1024, 256, 128, 1, 49, 13),  # 7×7 grid, R+C−1 anti-diagonals
        (256, 256, 256, 128, 1, 1, 1),
        (1360, 2048, 256, 128, 1, 150, 24),  # zebra demo 2048×1360: 10 rows × 15 cols
        # portrait: the snapped last column (origin 1104) overlaps column 7 (896) only where
        # column 8 already wrote, so it adds no dependency: still 15 + 10 − 1
        (2048, 1360, 256, 128, 1, 150, 24),
        (384, 384, 256, 128, 1, 4, 3),  # hq_demo's job: (0, 128) and (128, 0) run together
        (256, 1024, 256, 128, 1, 7, 7),  # a single row runs fully sequential
        (257, 1031, 256, 128, 1, 2 * 8, None),
        (3001, 17, 256, 128, 1, 23, 23),  # thin strip: padded to one window wide
        (100, 60, 256, 128, 1, 1, 1),  # smaller than a window: padded
        (1024, 768, 256, 0, 1, 12, None),  # no overlap: every window independent
    ],
)
def test_plan_counts(height, width, window, overlap, align, n_windows, n_levels):
    plan = plan_windows(height, width, window, overlap, align)
    assert len(plan.boxes) == n_windows
    if n_levels is not None:
        assert plan.num_levels == n_levels
    if overlap == 0:
        assert plan.num_levels == 1


@pytest.mark.parametrize(
    "height, width, window, overlap, align",
    [
        (257, 1031, 256, 128, 1),
        (3001, 17, 256, 128, 1),
        (17, 3001, 256, 128, 1),
        (1000, 744, 256, 128, 4),
        (1236, 816, 256, 128, 2),
        (330, 330, 192, 96, 3),
        (90, 130, 32, 16, 1),
        (96, 160, 64, 48, 8),
        (40, 40, 32, 24, 1),
    ],
)
def test_plan_invariants(height, width, window, overlap, align):
    plan = plan_windows(height, width, window, overlap, align)
    ph, pw = plan.padded_height, plan.padded_width
    assert ph >= max(height, window) and pw >= max(width, window)
    assert ph % align == 0 and pw % align == 0
    assert ph - height < max(align, window) and pw - width < max(align, window)
    covered = [[False] * pw for _ in range(ph)] if ph * pw <= 200_000 else None
    for box in plan.boxes:
        assert box.height == window and box.width == window
        assert 0 <= box.top and box.bottom <= ph and 0 <= box.left and box.right <= pw
        assert all(v % align == 0 for v in box), box  # y crops stay on whole observed pixels
        if covered is not None:
            for r in range(box.top, box.bottom):
                covered[r][box.left : box.right] = [True] * box.width
    if covered is not None:
        assert all(all(row) for row in covered)
    # the last row/column touches the border
    assert max(b.bottom for b in plan.boxes) == ph and max(b.right for b in plan.boxes) == pw
    # raster order
    assert list(plan.boxes) == sorted(plan.boxes, key=lambda b: (b.top, b.left))
    # levels from the fast grid method equal the reference definition over the actual boxes
    assert list(plan.levels) == levels_from_boxes(plan.boxes)


def owner_map(boxes):
    """Each pixel's owner: the raster-first box covering it (the window that writes it)."""
    owner = np.full((max(b.bottom for b in boxes), max(b.right for b in boxes)), -1)
    for k, box in enumerate(boxes):
        region = owner[box.slices()]
        region[region < 0] = k
    return owner


@pytest.mark.parametrize("height, width", [(1024, 1024), (1000, 1300), (2048, 1360), (640, 300), (384, 384)])
def test_wavefront_level_properties(height, width):
    plan = plan_windows(height, width, 256, 128, 1)
    boxes, levels = plan.boxes, plan.levels
    owner = owner_map(boxes)
    for k, box in enumerate(boxes):
        readers = set(np.unique(owner[box.slices()]).tolist()) - {k}
        assert all(m < k and levels[m] < levels[k] for m in readers)  # every pixel read is written lower
    for a, b in itertools.combinations(range(len(boxes)), 2):
        if levels[a] == levels[b] and boxes[a].intersects(boxes[b]):
            # same-level windows share only pixels a lower level wrote: neither writes them
            rows = slice(max(boxes[a].top, boxes[b].top), min(boxes[a].bottom, boxes[b].bottom))
            cols = slice(max(boxes[a].left, boxes[b].left), min(boxes[a].right, boxes[b].right))
            shared = owner[rows, cols]
            assert not np.isin(shared, [a, b]).any()
            assert all(levels[m] < levels[a] for m in np.unique(shared))


def test_regular_grid_levels_are_anti_diagonals():
    plan = plan_windows(1024, 1024, 256, 128, 1)
    for box, level in zip(plan.boxes, plan.levels):
        assert level == box.top // 128 + box.left // 128
    # (1, 0) overlaps (0, 1) yet shares its level: their overlap belongs to (0, 0)
    one_zero, zero_one = plan.boxes.index(Box(128, 0, 256, 256)), plan.boxes.index(Box(0, 128, 256, 256))
    assert plan.boxes[one_zero].intersects(plan.boxes[zero_one])
    assert plan.levels[one_zero] == plan.levels[zero_one] == 1


def test_snapped_border_window_depends_two_columns_back():
    # width 300: origins 0 and 44; with window 256, stride 128 on width 420: 0, 128, 164
    plan = plan_windows(256, 420, 256, 128, 1)
    assert [b.left for b in plan.boxes] == [0, 128, 164]
    assert plan.boxes[2].intersects(plan.boxes[0])
    assert list(plan.levels) == [0, 1, 2]


def test_levels_from_arbitrary_boxes():
    boxes = [Box(0, 0, 10, 10), Box(0, 20, 10, 10), Box(5, 5, 10, 10), Box(5, 25, 10, 10), Box(30, 0, 5, 5)]
    assert levels_from_boxes(boxes) == [0, 0, 1, 1, 0]
    # the third box overlaps the second only where the first already wrote: no dependency on it
    boxes = [Box(0, 0, 10, 10), Box(0, 5, 10, 10), Box(5, 0, 10, 10)]
    assert levels_from_boxes(boxes) == [0, 1, 1]
    assert levels_from_boxes([]) == []


def test_level_groups_partition_all_windows():
    plan = plan_windows(1024, 768, 256, 128, 1)
    groups = plan.level_groups()
    assert sorted(i for g in groups for i in g) == list(range(len(plan.boxes)))
    assert len(groups) == plan.num_levels == 7 + 5 - 1


@pytest.mark.parametrize(
    "window, align, expected",
    [(256, 1, 256), (256, 2, 256), (256, 4, 256), (256, 8, 256), (256, 3, 192), (64, 1, 64), (40, 1, 32), (256, 5, 160)],
)
def test_effective_window(window, align, expected):
    assert effective_window(window, align) == expected


def test_effective_window_too_small():
    with pytest.raises(ValueError):
        effective_window(16, 1)


@pytest.mark.parametrize("window, overlap, align, expected", [(256, 128, 1, 128), (192, 128, 3, 126), (64, 64, 1, 63), (256, 100, 8, 96)])
def test_effective_overlap(window, overlap, align, expected):
    assert effective_overlap(window, overlap, align) == expected


def test_plan_rejects_misaligned_window():
    with pytest.raises(ValueError):
        plan_windows(512, 512, 256, 128, 3)
