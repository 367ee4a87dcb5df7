"""Probabilities -> labelled segments, on synthetic probability arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stages.segments import SegmentRules, median_smooth, merge_close, runs, segment

FRAME = 0.02  # wav2vec2's 20 ms frames


def track(*parts: tuple[float, int]) -> np.ndarray:
    """A probability track: (value, frames) pieces concatenated."""
    return np.concatenate([np.full(n, v, np.float32) for v, n in parts])


def tone_silence_tone() -> np.ndarray:
    """A frame model's view of 1 s tone, 0.5 s silence, 1 s tone: [frames, (tone, silence)]."""
    tone = track((0.9, 50), (0.1, 25), (0.8, 50))
    return np.stack([tone, 1 - tone], axis=1)


def test_tone_silence_tone_gives_three_segments_with_mean_scores():
    got = segment(tone_silence_tone(), ["tone", "silence"], FRAME, SegmentRules(threshold=0.5))
    assert [(s["label"], s["start"], s["end"]) for s in got] == [
        ("tone", 0.0, 1.0),
        ("silence", 1.0, 1.5),
        ("tone", 1.5, 2.5),
    ]
    assert [s["score"] for s in got] == pytest.approx([0.9, 0.9, 0.8])


def test_merge_gap_joins_segments_of_one_label_closer_than_it():
    probs = tone_silence_tone()
    rules = SegmentRules(threshold=0.5, merge_gap_s=0.6)  # the 0.5 s silence is shorter
    tones = [s for s in segment(probs, ["tone", "silence"], FRAME, rules) if s["label"] == "tone"]
    assert [(s["start"], s["end"]) for s in tones] == [(0.0, 2.5)]
    # The gap's frames count in the score: (50 * 0.9 + 25 * 0.1 + 50 * 0.8) / 125.
    assert tones[0]["score"] == pytest.approx((45 + 2.5 + 40) / 125)
    exact = SegmentRules(threshold=0.5, merge_gap_s=0.5)  # "less than": 25 frames stay apart
    assert len([s for s in segment(probs, ["t", "s"], FRAME, exact) if s["label"] == "t"]) == 2


def test_min_segment_drops_short_segments_after_merging():
    p = track((0.9, 10), (0.0, 2), (0.9, 10), (0.0, 30), (0.9, 4))[:, None]
    rules = SegmentRules(threshold=0.5, min_segment_s=0.1, merge_gap_s=0.05)
    got = segment(p, ["x"], FRAME, rules)
    # The first two (0.2 s each) merge across a 0.04 s gap; the last is 0.08 s: dropped.
    assert [(s["start"], s["end"]) for s in got] == [(0.0, pytest.approx(0.44))]
    at_limit = SegmentRules(threshold=0.5, min_segment_s=0.08)  # 4 frames is exactly 0.08 s
    assert len(segment(p, ["x"], FRAME, at_limit)) == 3


def test_median_smoothing_removes_blips_and_fills_dropouts():
    p = track((0.1, 20), (0.9, 1), (0.1, 20), (0.9, 20), (0.1, 1), (0.9, 20))[:, None]
    raw = segment(p, ["x"], FRAME, SegmentRules(threshold=0.5))
    assert len(raw) == 3
    smooth = segment(p, ["x"], FRAME, SegmentRules(threshold=0.5, smoothing_frames=3))
    assert [(s["start"], s["end"]) for s in smooth] == [(pytest.approx(0.82), pytest.approx(1.64))]


def test_median_smooth_is_centred_and_repeats_the_edges():
    p = np.array([[0.0], [1.0], [0.0], [0.0], [1.0], [1.0]], np.float32)
    np.testing.assert_array_equal(median_smooth(p, 3)[:, 0], [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(median_smooth(p, 1), p)
    with pytest.raises(ValueError, match="odd"):
        median_smooth(p, 4)


def test_labels_are_independent_so_segments_may_overlap():
    a = track((0.9, 30), (0.1, 20))
    b = track((0.1, 10), (0.7, 40))
    got = segment(np.stack([a, b], axis=1), ["a", "b"], FRAME, SegmentRules(threshold=0.6))
    assert [(s["label"], s["start"], s["end"]) for s in got] == [
        ("a", 0.0, pytest.approx(0.6)),
        ("b", pytest.approx(0.2), 1.0),
    ]


def test_threshold_is_inclusive_and_the_end_is_clipped_to_the_item():
    p = track((0.5, 5))[:, None]
    got = segment(p, ["x"], FRAME, SegmentRules(threshold=0.5), duration_s=0.093)
    assert [(s["start"], s["end"]) for s in got] == [(0.0, 0.093)]
    assert segment(p, ["x"], FRAME, SegmentRules(threshold=0.51)) == []


def test_helpers_on_edge_cases():
    assert runs(np.array([True, True, False, True])) == [(0, 2), (3, 4)]
    assert runs(np.zeros(0, bool)) == []
    assert merge_close([(0, 2), (4, 6), (10, 12)], max_gap=3) == [(0, 6), (10, 12)]
    assert segment(np.zeros((0, 2), np.float32), ["a", "b"], FRAME, SegmentRules()) == []
    with pytest.raises(ValueError, match="probs must be"):
        segment(np.zeros((4, 3), np.float32), ["a", "b"], FRAME, SegmentRules())
