"""Word-timestamp pieces against transformers' Whisper helpers: DTW, median filter, words."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.whisper.generation_whisper import _dynamic_time_warping, _median_filter
from transformers.models.whisper.tokenization_whisper import _combine_tokens_into_words

from pipeline.models.whisper.align import boundary_times, dtw, median_filter
from pipeline.models.whisper.words import split_words
from pipeline.testing.tiny_whisper import whisper_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return whisper_tokenizer(("en", "zh"))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (5, 40), (23, 300)])
def test_dtw_equals_transformers(shape):
    rng = np.random.default_rng(sum(shape))
    for matrix in (rng.normal(size=shape), rng.integers(0, 3, size=shape).astype(float)):
        # The integer matrix makes ties, where the tie-breaking order must match too.
        expected = _dynamic_time_warping(matrix)
        got = dtw(matrix)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize("width", [1, 3, 7])
def test_median_filter_equals_transformers(width):
    x = torch.randn(4, 9, 50, generator=torch.Generator().manual_seed(width))
    expected = _median_filter(x, width) if width > 1 else x
    assert torch.equal(median_filter(x, width), expected)
    short = torch.randn(2, 3, 2)
    assert torch.equal(median_filter(short, 7), short)  # shorter than the half width


def test_boundary_times_follow_a_diagonal_alignment():
    """Attention that walks through the audio gives each token the time it attends to."""
    rows, frames = 6, 60
    weights = torch.full((2, rows, frames), 0.01)
    for r in range(rows):
        weights[:, r, r * 10 : r * 10 + 10] = 1.0
    times = boundary_times(weights, filter_width=3)
    assert times.tolist() == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


@pytest.mark.parametrize(
    "text",
    [
        " the quiet river, slowly (again) opens.",
        ' "Red" bird - and a small house!',
        " tired  sister's old-new garden",
        " café naïve — 東京 “ok”",
    ],
)
def test_words_equal_transformers_grouping(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    words, _, indices = _combine_tokens_into_words(tokenizer, ids, language="english")
    got = split_words(tokenizer, ids)
    assert [w.text for w in got] == words
    assert [w.indices for w in got] == indices


def test_unspaced_languages_split_on_characters(tokenizer):
    ids = tokenizer.encode("東京、大阪。", add_special_tokens=False)
    words, _, indices = _combine_tokens_into_words(tokenizer, ids, language="chinese")
    got = split_words(tokenizer, ids, spaced=False)
    assert [w.text for w in got] == words == ["東", "京、", "大", "阪。"]
    assert [w.indices for w in got] == indices


def test_broken_bytes_become_their_own_pieces(tokenizer):
    """A model can emit any byte token; a byte that never decodes must not swallow the
    words after it."""
    lone = tokenizer.convert_tokens_to_ids("Ã")  # the byte 0xC3 alone: never valid here
    ids = tokenizer.encode(" red", add_special_tokens=False) + [lone]
    ids += tokenizer.encode(" bird", add_special_tokens=False)
    got = split_words(tokenizer, ids)
    assert [w.text for w in got] == [" red\ufffd", " bird"]
    assert "".join(w.text for w in got) == tokenizer.decode(ids)
