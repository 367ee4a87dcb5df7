"""Confidence intervals and significance tests for corpus error rates.

Everything here takes *distinct value rows with their multiplicity*, which DuckDB computes
with one GROUP BY (`SELECT edits, ref_words, count(*) ... GROUP BY ALL ORDER BY ALL`), so a
million items arrive as a few thousand rows and no item is ever pulled into Python.

- `ratio_ci`: the percentile bootstrap over items of a corpus rate (total edits over total
  reference words). Resampling n items with replacement is a multinomial draw of n over
  the items; items with equal (edits, words) are interchangeable for the statistic, so a
  multinomial of n over the distinct rows with probabilities count/n has exactly the same
  distribution, at a cost proportional to the distinct rows instead of n. Seeded:
  the same rows in the same order give the same interval.
- `matched_pairs`: sclite's matched-pairs sentence-segment word error test (MAPSSWE,
  Gillick & Cox 1989) with each utterance as one segment: Z_i = errors of A minus errors
  of B on item i; W = mean(Z) / (sd(Z) / sqrt(n)) is standard normal under "no difference";
  two-sided p. sclite cuts utterances further at stretches both systems got right; an
  utterance is the coarser segment, which keeps the test valid (segments stay independent)
  and needs only the per-item counts the tables hold.
- `paired_ratio_diff_ci`: the paired bootstrap (Bisani & Ney 2004) of WER(A) - WER(B) over
  the items both systems scored, for an interval on the difference itself.
- `unpaired_ratio_diff_ci`: two independent bootstraps, for "new items vs the rest".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_RESAMPLES = 1000
# Resamples drawn per block: bounds memory at BLOCK x distinct rows of int64.
_BLOCK = 100


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided percentile interval at `level`."""

    value: float
    low: float
    high: float
    level: float
    resamples: int

    def excludes(self, x: float) -> bool:
        """Whether `x` lies outside the interval (the difference is beyond bootstrap noise)."""
        return x < self.low or x > self.high

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "resamples": self.resamples,
        }


def _draw_stats(counts, values, stat, resamples: int, seed: int):
    """`stat(totals)` for `resamples` multinomial resamples of the rows; totals[j] is the
    resampled sum of column j of `values` (rows x columns)."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    n = int(counts.sum())
    rng = np.random.default_rng(seed)
    p = counts / n
    out = []
    for start in range(0, resamples, _BLOCK):
        draws = rng.multinomial(n, p, size=min(_BLOCK, resamples - start))
        out.append(stat(draws @ values))
    return np.concatenate(out)


def _interval(value: float, samples, level: float, resamples: int) -> Interval:
    import numpy as np

    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return Interval(value, value, value, level, resamples)
    tail = (1 - level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return Interval(value, float(low), float(high), level, resamples)


def _check(counts, resamples: int, level: float) -> None:
    if len(counts) == 0 or min(counts) < 0 or sum(counts) == 0:
        raise ValueError("a bootstrap needs at least one item and no negative counts")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"resamples must be >= 1 and level in (0, 1), got {resamples}, {level}")


def ratio_ci(
    edits,
    words,
    counts,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> Interval | None:
    """Bootstrap interval of sum(edits*count) / sum(words*count); None with no words."""
    import numpy as np

    _check(counts, resamples, level)
    c = np.asarray(counts, dtype=np.float64)
    total_words = float(np.dot(words, c))
    if total_words == 0:
        return None
    value = float(np.dot(edits, c)) / total_words

    def stat(t):
        with np.errstate(divide="ignore", invalid="ignore"):
            return t[:, 0] / t[:, 1]

    samples = _draw_stats(counts, np.column_stack([edits, words]), stat, resamples, seed)
    return _interval(value, samples, level, resamples)


def paired_ratio_diff_ci(
    edits_a,
    edits_b,
    words,
    counts,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> Interval | None:
    """Paired bootstrap interval of WER(A) - WER(B) over the same items; None with no words."""
    import numpy as np

    _check(counts, resamples, level)
    c = np.asarray(counts, dtype=np.float64)
    total_words = float(np.dot(words, c))
    if total_words == 0:
        return None
    value = (float(np.dot(edits_a, c)) - float(np.dot(edits_b, c))) / total_words

    def stat(t):
        with np.errstate(divide="ignore", invalid="ignore"):
            return (t[:, 0] - t[:, 1]) / t[:, 2]

    values = np.column_stack([edits_a, edits_b, words])
    samples = _draw_stats(counts, values, stat, resamples, seed)
    return _interval(value, samples, level, resamples)


def unpaired_ratio_diff_ci(
    a: tuple,
    b: tuple,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> Interval | None:
    """Interval of rate(a) - rate(b) for two independent samples, each (edits, words, counts)."""
    import numpy as np

    _check(a[2], resamples, level)
    _check(b[2], resamples, level)
    wa, wb = float(np.dot(a[1], a[2])), float(np.dot(b[1], b[2]))
    if wa == 0 or wb == 0:
        return None
    value = float(np.dot(a[0], a[2])) / wa - float(np.dot(b[0], b[2])) / wb

    def stat(t):
        with np.errstate(divide="ignore", invalid="ignore"):
            return t[:, 0] / t[:, 1]

    sa = _draw_stats(a[2], np.column_stack(a[:2]), stat, resamples, seed)
    sb = _draw_stats(b[2], np.column_stack(b[:2]), stat, resamples, seed + 1)
    return _interval(value, sa - sb, level, resamples)


@dataclass(frozen=True)
class MatchedPairs:
    """The MAPSSWE result: n segments, mean and sd of Z, the statistic W, two-sided p."""

    n: int
    mean: float
    sd: float
    w: float | None
    p: float

    def as_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "sd": self.sd, "w": self.w, "p": self.p}


def matched_pairs(n: int, sum_z: float, sum_z2: float) -> MatchedPairs | None:
    """MAPSSWE from the sufficient statistics of Z (count, sum, sum of squares); None if n < 2.

    With zero variance the systems differ by the same amount on every segment: no
    difference gives p = 1, a constant non-zero one p = 0 (W is then undefined)."""
    if n < 2:
        return None
    mean = sum_z / n
    var = max(sum_z2 - n * mean * mean, 0.0) / (n - 1)
    sd = math.sqrt(var)
    if sd == 0:
        return MatchedPairs(n, mean, 0.0, None, 1.0 if mean == 0 else 0.0)
    w = mean / (sd / math.sqrt(n))
    return MatchedPairs(n, mean, sd, w, math.erfc(abs(w) / math.sqrt(2)))
