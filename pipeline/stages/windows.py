"""Cutting long items into overlapping windows, stitching and pooling their outputs.

Shared by the classification stages; pure Python over NumPy. The windows run in
micro-batches through `ModelStage.run_batched` (`stages/batching.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Default micro-batch budgets (padded audio seconds). On CPU, tiny wav2vec2 classifiers ran
# ~2x faster at 40 s than at 320 s (large batches fall out of cache; benchmarks/RESULTS.md);
# on a GPU, 128 AST windows is the batch of the raw-model ceiling in docs/FACTS.md.
CPU_BATCH_S = 40.0
GPU_BATCH_S = 1312.0


def batch_budget(seconds: float | None, device: str, rate: int) -> int:
    """The micro-batch budget in samples: the spec's, or the default for `device`."""
    if seconds is None:
        seconds = GPU_BATCH_S if device.startswith("cuda") else CPU_BATCH_S
    return int(seconds * rate)


def plan_windows(samples: int, window: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, stop) ranges covering an item of `samples` samples.

    One range when the item fits in `window`. Otherwise windows of `window` samples start
    every `window - overlap` samples (rounded down to a multiple of `align`, at least
    `align`), and the last window ends at the item's end: it starts at the last multiple
    of `align` that leaves it at least `window` long, so it overlaps its predecessor by
    at least `overlap` and is at most `align - 1` samples longer than `window`. No window
    is ever a short tail.
    """
    if samples <= window:
        return [(0, samples)]
    hop = max(align, (window - overlap) // align * align)
    starts = list(range(0, samples - window, hop))  # each ends before the item does
    last = (samples - window) // align * align
    if starts[-1] == last:
        starts.pop()
    return [(s, s + window) for s in starts] + [(last, samples)]


def kept_ranges(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The part of each window's output a stitched result keeps ("each window its centre").

    `spans` are consecutive windows' output ranges [first, end) on one global axis
    (frames), each overlapping the next. Two neighbours split their overlap in the middle;
    the first window keeps its start and the last its end, so the kept ranges tile
    [spans[0][0], spans[-1][1]) without gap or repeat.
    """
    cuts = [spans[0][0]]
    for (_, end), (nxt, _) in zip(spans[:-1], spans[1:], strict=True):
        if nxt > end:
            raise ValueError(f"windows do not overlap: one ends at {end}, the next starts at {nxt}")
        cuts.append((nxt + end) // 2)
    cuts.append(spans[-1][1])
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def pool(scores: np.ndarray, how: str) -> np.ndarray:
    """[windows, labels] -> [labels]: the mean or the max over windows."""
    if how == "mean":
        return scores.mean(axis=0)
    if how == "max":
        return scores.max(axis=0)
    raise ValueError(f"unknown pooling {how!r}; expected mean or max")
