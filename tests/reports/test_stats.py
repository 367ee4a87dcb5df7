import math

import numpy as np
import pytest

from pipeline.reports.stats import (
    matched_pairs,
    paired_ratio_diff_ci,
    ratio_ci,
    unpaired_ratio_diff_ci,
)


def test_matched_pairs_matches_a_hand_computed_case():
    # System A errors per utterance 2,1,3,0 and B 1,1,1,0: Z = 1,0,2,0.
    # mean 0.75; variance ((.25)^2 + (.75)^2 + (1.25)^2 + (.75)^2) / 3 = 2.75 / 3;
    # W = 0.75 / sqrt(2.75 / 3 / 4) = 1.566699; p = erfc(W / sqrt 2) = 0.117185.
    z = [1, 0, 2, 0]
    r = matched_pairs(len(z), sum(z), sum(x * x for x in z))
    assert r.mean == 0.75
    assert r.sd == pytest.approx(math.sqrt(2.75 / 3))
    assert r.w == pytest.approx(1.566699, abs=1e-6)
    assert r.p == pytest.approx(0.117185, abs=1e-6)


def test_matched_pairs_degenerate_cases():
    assert matched_pairs(1, 3, 9) is None
    assert matched_pairs(5, 0, 0).p == 1.0  # identical systems
    same_gap = matched_pairs(5, 5, 5)  # A makes one more error on every item
    assert same_gap.p == 0.0 and same_gap.w is None


def test_bootstrap_is_the_item_bootstrap_seeded_and_covers_the_rate():
    edits, words, counts = [0, 1, 3], [10, 10, 5], [50, 30, 20]
    ci = ratio_ci(edits, words, counts, resamples=1000, seed=7)
    rate = (30 + 60) / (500 + 300 + 100)
    assert ci.value == pytest.approx(rate)
    assert ci.low < rate < ci.high
    assert ci == ratio_ci(edits, words, counts, resamples=1000, seed=7)
    assert ci != ratio_ci(edits, words, counts, resamples=1000, seed=8)
    # Against a plain bootstrap that resamples the 100 items themselves: same spread.
    items_e = np.repeat(edits, counts)
    items_w = np.repeat(words, counts)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 100, size=(4000, 100))
    plain = items_e[idx].sum(1) / items_w[idx].sum(1)
    lo, hi = np.quantile(plain, [0.025, 0.975])
    assert ci.low == pytest.approx(lo, abs=0.012) and ci.high == pytest.approx(hi, abs=0.012)


def test_bootstrap_of_no_reference_words_is_undefined_not_zero():
    assert ratio_ci([2], [0], [4]) is None
    with pytest.raises(ValueError):
        ratio_ci([], [], [])


def test_one_item_has_no_spread():
    ci = ratio_ci([1], [4], [1], resamples=50)
    assert (ci.low, ci.value, ci.high) == (0.25, 0.25, 0.25)


def test_paired_difference_sees_a_consistent_gap_and_not_noise():
    # A makes one more error than B on every one of 40 ten-word items: WER gap 10 points.
    gap = paired_ratio_diff_ci([2], [1], [10], [40], resamples=500)
    assert gap.value == pytest.approx(0.1) and gap.excludes(0.0)
    # Half the items favour A, half B, by the same amount: no difference.
    tie = paired_ratio_diff_ci([2, 1], [1, 2], [10, 10], [20, 20], resamples=500)
    assert tie.value == 0 and not tie.excludes(0.0)


def test_unpaired_difference():
    a = ([1], [10], [200])
    b = ([3], [10], [200])
    d = unpaired_ratio_diff_ci(a, b, resamples=300)
    assert d.value == pytest.approx(-0.2)
    assert d.low == d.high == pytest.approx(-0.2)  # no spread inside either sample
    noisy = unpaired_ratio_diff_ci(([0, 2], [10, 10], [100, 100]), ([1], [10], [50]), resamples=300)
    assert not noisy.excludes(0.0)
