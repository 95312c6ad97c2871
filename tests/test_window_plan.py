"""Window plans are pure geometry: table tests of boxes, snapping, alignment, padding and levels."""

from __future__ import annotations

import itertools

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
        (1024, 1024, 256, 128, 1, 49, 19),  # 7×7 grid, 2(R−1)+C levels
        (256, 256, 256, 128, 1, 1, 1),
        (1360, 2048, 256, 128, 1, 150, 33),  # zebra demo 2048×1360: 10 rows × 15 cols
        # portrait: the snapped last column (origin 1104) also overlaps column 7 (896), so window
        # (i, 7) waits for (i−1, 9): 3 levels per row after the first, 9 + 3·14 + 1 = 52
        (2048, 1360, 256, 128, 1, 150, 52),
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


@pytest.mark.parametrize("height, width", [(1024, 1024), (1000, 1300), (2048, 1360), (640, 300)])
def test_wavefront_level_properties(height, width):
    plan = plan_windows(height, width, 256, 128, 1)
    boxes, levels = plan.boxes, plan.levels
    for a, b in itertools.combinations(range(len(boxes)), 2):
        if boxes[a].intersects(boxes[b]):
            assert levels[a] != levels[b]  # same level never overlaps
            assert levels[a] < levels[b]  # raster-earlier dependency sits lower


def test_regular_grid_levels_follow_2i_plus_j():
    plan = plan_windows(1024, 1024, 256, 128, 1)
    for box, level in zip(plan.boxes, plan.levels):
        assert level == 2 * (box.top // 128) + box.left // 128


def test_snapped_border_window_depends_two_columns_back():
    # width 300: origins 0 and 44; with window 256, stride 128 on width 420: 0, 128, 164
    plan = plan_windows(256, 420, 256, 128, 1)
    assert [b.left for b in plan.boxes] == [0, 128, 164]
    assert plan.boxes[2].intersects(plan.boxes[0])
    assert list(plan.levels) == [0, 1, 2]


def test_levels_from_arbitrary_boxes():
    boxes = [Box(0, 0, 10, 10), Box(0, 20, 10, 10), Box(5, 5, 10, 10), Box(5, 25, 10, 10), Box(30, 0, 5, 5)]
    assert levels_from_boxes(boxes) == [0, 0, 1, 1, 0]


def test_level_groups_partition_all_windows():
    plan = plan_windows(1024, 768, 256, 128, 1)
    groups = plan.level_groups()
    assert sorted(i for g in groups for i in g) == list(range(len(plan.boxes)))
    assert len(groups) == plan.num_levels == 2 * (7 - 1) + 5


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
