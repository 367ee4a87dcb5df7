"""Per-frame label probabilities -> labelled segments (start, end, label, score). Pure NumPy.

For each label, independently (so segments of different labels may overlap, as in
multi-label frame models such as speaker activity):
1. smooth its probabilities with a centred running median of `smoothing_frames` frames
   (edges repeat the first/last frame);
2. a frame carries the label when the smoothed probability reaches `threshold`;
3. runs of such frames are segments; frame `i` spans [i, i + 1) * frame_s seconds;
4. segments less than `merge_gap_s` apart are joined (the gap's frames become part of it);
5. segments shorter than `min_segment_s` are dropped (after joining);
6. `score` is the mean smoothed probability over the segment's frames.

Lengths compare in whole frames (`merge_gap_s / frame_s`, `min_segment_s / frame_s`) with a
tiny tolerance, so 0.1 s at 20 ms frames means exactly 5 frames despite float rounding.
Segments are returned by start time, then by label order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_EPS = 1e-9


@dataclass(frozen=True)
class SegmentRules:
    """How probabilities become segments (the frame task spec's fields)."""

    threshold: float = 0.5
    smoothing_frames: int = 1
    min_segment_s: float = 0.0
    merge_gap_s: float = 0.0


def median_smooth(probs: np.ndarray, width: int) -> np.ndarray:
    """Running median over axis 0 of a [frames, labels] array, `width` (odd) frames wide."""
    if width <= 1 or len(probs) == 0:
        return probs
    if width % 2 == 0:
        raise ValueError(f"smoothing width must be odd to stay centred, got {width}")
    half = width // 2
    padded = np.pad(probs, ((half, half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=0)
    return np.median(windows, axis=-1).astype(probs.dtype, copy=False)


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame ranges where a boolean array is True."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def merge_close(spans: list[tuple[int, int]], max_gap: float) -> list[tuple[int, int]]:
    """Join consecutive spans whose gap (in frames) is less than `max_gap`."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] < max_gap - _EPS:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def segment(
    probs: np.ndarray,
    labels: Sequence[str],
    frame_s: float,
    rules: SegmentRules,
    *,
    duration_s: float | None = None,
) -> list[dict]:
    """Segments of `probs` ([frames, len(labels)]), as {start, end, label, score} dicts.

    `duration_s`, when given, clips the last segment's end to the item's end.
    """
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must be [frames, {len(labels)}], got {list(probs.shape)}")
    smooth = median_smooth(probs, rules.smoothing_frames)
    min_frames = rules.min_segment_s / frame_s
    found: list[tuple[int, int, dict]] = []
    for j, label in enumerate(labels):
        spans = merge_close(runs(smooth[:, j] >= rules.threshold), rules.merge_gap_s / frame_s)
        for start, end in spans:
            if end - start < min_frames - _EPS:
                continue
            stop = end * frame_s if duration_s is None else min(end * frame_s, duration_s)
            item = {
                "start": float(start * frame_s),
                "end": float(stop),
                "label": str(label),
                "score": float(smooth[start:end, j].mean()),
            }
            found.append((int(start), j, item))
    return [item for _, _, item in sorted(found, key=lambda f: f[:2])]
