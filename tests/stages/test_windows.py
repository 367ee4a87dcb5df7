"""Window planning and stitching for the classification stages."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stages.windows import kept_ranges, plan_windows, pool


def test_an_item_that_fits_is_one_window():
    assert plan_windows(100, 100, 10) == [(0, 100)]
    assert plan_windows(1, 100, 10) == [(0, 1)]


def test_windows_step_by_window_minus_overlap_and_the_last_ends_at_the_end():
    assert plan_windows(250, 100, 20) == [(0, 100), (80, 180), (150, 250)]
    assert plan_windows(260, 100, 0) == [(0, 100), (100, 200), (160, 260)]
    assert plan_windows(101, 100, 0) == [(0, 100), (1, 101)]  # no short tail window


@pytest.mark.parametrize("samples", [321, 1000, 4321, 10_000])
def test_aligned_windows_cover_the_item_with_at_least_the_overlap(samples):
    bounds = plan_windows(samples, 320, 64, align=32)
    assert bounds[0][0] == 0 and bounds[-1][1] == samples
    assert all(s % 32 == 0 for s, _ in bounds)
    assert all(320 <= b - a < 352 for a, b in bounds)
    for (_, end), (start, _) in zip(bounds[:-1], bounds[1:], strict=True):
        assert end - start >= 64


def test_kept_ranges_split_each_overlap_in_the_middle_and_tile_the_item():
    spans = [(0, 100), (80, 180), (150, 250)]
    kept = kept_ranges(spans)
    assert kept == [(0, 90), (90, 165), (165, 250)]
    assert [k for a, b in kept for k in range(a, b)] == list(range(250))
    assert kept_ranges([(0, 7)]) == [(0, 7)]
    assert kept_ranges([(0, 10), (10, 20)]) == [(0, 10), (10, 20)]  # touching is enough
    with pytest.raises(ValueError, match="do not overlap"):
        kept_ranges([(0, 10), (11, 20)])


def test_pooling_is_a_mean_or_a_max_per_label():
    scores = np.array([[0.1, 0.9], [0.5, 0.3]], np.float32)
    np.testing.assert_allclose(pool(scores, "mean"), [0.3, 0.6])
    np.testing.assert_allclose(pool(scores, "max"), [0.5, 0.9])
    with pytest.raises(ValueError, match="pooling"):
        pool(scores, "median")
