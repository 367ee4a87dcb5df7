import random

import jiwer
import pytest

from pipeline.metrics.wer import EditCounts, char_edits, corpus_wer, word_edits


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        # (ref_words, hits, substitutions, deletions, insertions)
        ("a b c", "a b c", (3, 3, 0, 0, 0)),
        ("a b c", "a x c", (3, 2, 1, 0, 0)),
        ("a b c", "a c", (3, 2, 0, 1, 0)),
        ("a b c", "a b c d", (3, 3, 0, 0, 1)),
        ("the cat sat", "a cat sat down", (3, 2, 1, 0, 1)),
        ("a b", "", (2, 0, 0, 2, 0)),
        ("", "a b", (0, 0, 0, 0, 2)),
        ("", "", (0, 0, 0, 0, 0)),
    ],
)
def test_word_edits_hand_computed(ref, hyp, expected):
    assert word_edits(ref, hyp) == EditCounts(*expected)


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("ab cd", "ab cd", (5, 5, 0, 0, 0)),
        ("ab cd", "abcd", (5, 4, 0, 1, 0)),  # the space is a character
        ("ab", "ax", (2, 1, 1, 0, 0)),
        ("", "a b", (0, 0, 0, 0, 3)),
        ("a b", "", (3, 0, 0, 3, 0)),
    ],
)
def test_char_edits_hand_computed(ref, hyp, expected):
    assert char_edits(ref, hyp) == EditCounts(*expected)


@pytest.mark.parametrize(
    ("counts", "errors", "wer"),
    [
        (EditCounts(4, 2, 1, 1, 1), 3, 0.75),
        (EditCounts(2, 2, 0, 0, 0), 0, 0.0),
        (EditCounts(1, 0, 0, 1, 3), 4, 4.0),
        (EditCounts(0, 0, 0, 0, 2), 2, None),
    ],
)
def test_errors_and_rate(counts, errors, wer):
    assert counts.errors == errors
    assert counts.wer == wer


@pytest.mark.parametrize("args", [(3, 1, 1, 0, 0), (1, 1, 0, 0, -1)])
def test_inconsistent_counts_are_refused(args):
    with pytest.raises(ValueError):
        EditCounts(*args)


def test_corpus_wer_is_not_the_mean_of_item_rates():
    refs = ["a", "a b c d e f g h i j"]
    hyps = ["x", "a b c d e f g h i j"]
    counts = [word_edits(r, h) for r, h in zip(refs, hyps, strict=True)]
    mean_of_rates = sum(c.wer for c in counts) / len(counts)
    assert mean_of_rates == pytest.approx(0.5)
    assert corpus_wer(counts) == pytest.approx(1 / 11)
    assert corpus_wer(counts) == pytest.approx(jiwer.wer(refs, hyps))


def _random_corpus(seed: int, n: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    vocab = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    refs, hyps = [], []
    for _ in range(n):
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 12))]
        hyp = [w for w in ref if rng.random() > 0.2]
        hyp = [rng.choice(vocab) if rng.random() < 0.2 else w for w in hyp]
        hyp += [rng.choice(vocab) for _ in range(rng.randint(0, 2))]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return refs, hyps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corpus_rates_match_jiwer_on_lists(seed):
    refs, hyps = _random_corpus(seed, 200)
    pairs = list(zip(refs, hyps, strict=True))
    assert corpus_wer(word_edits(r, h) for r, h in pairs) == pytest.approx(jiwer.wer(refs, hyps))
    assert corpus_wer(char_edits(r, h) for r, h in pairs) == pytest.approx(jiwer.cer(refs, hyps))


def test_corpus_wer_counts_insertions_on_empty_references():
    counts = [word_edits("a b", "a b"), word_edits("", "x y")]
    assert corpus_wer(counts) == pytest.approx(1.0)


@pytest.mark.parametrize("counts", [[], [word_edits("", "x y")], [word_edits("", "")]])
def test_corpus_wer_undefined_without_reference_words(counts):
    assert corpus_wer(counts) is None
