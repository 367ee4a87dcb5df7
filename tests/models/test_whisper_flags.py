"""Likely-hallucination flags on constructed transcripts."""

from __future__ import annotations

import zlib

import pytest

from pipeline.models.whisper.flags import (
    FlagInputs,
    compression_ratio,
    hallucination_flags,
    has_repeated_ngrams,
    is_too_long,
)


def flags(text: str, duration_s: float = 10.0, kept_no_speech=(0.1,), **thresholds) -> list[str]:
    thresholds = {"compression_ratio_threshold": 2.4, "no_speech_threshold": 0.6} | thresholds
    ratio = compression_ratio(text) if text else None
    return hallucination_flags(
        FlagInputs(text, duration_s, ratio, tuple(kept_no_speech)), **thresholds
    )


@pytest.mark.parametrize(
    "text",
    [
        "Thank you. Thank you. Thank you.",
        "bye bye bye bye bye bye",
        "and then I said and then I said and then I said",
        "so the the results were, I mean, the results were the results were the results were good",
        "谢谢观看谢谢观看谢谢观看",
    ],
)
def test_repeated_ngrams_fire_on_loops(text):
    assert has_repeated_ngrams(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no no no",
        "the cat sat on the mat and the dog sat on the rug",
        "New York, New York is a song",
        "very very good",
        "我们明天去北京看看朋友",
    ],
)
def test_repeated_ngrams_leave_normal_text_alone(text):
    assert not has_repeated_ngrams(text)


def test_compression_ratio_is_openais():
    text = "hello world " * 20
    raw = text.encode()
    assert compression_ratio(text) == len(raw) / len(zlib.compress(raw))
    assert compression_ratio("") == 0.0
    assert compression_ratio(text) > 2.4 > compression_ratio("A quick brown fox jumps over it.")


def test_too_long_for_the_audio():
    assert is_too_long("word " * 12, duration_s=1.0)  # 12 words in a second
    assert is_too_long("x" * 60, duration_s=1.0)  # 60 characters in a second
    assert not is_too_long("a normal sentence of eight words or so", duration_s=3.0)
    assert not is_too_long("hello", duration_s=0.05)  # the slack covers very short clips


def test_each_flag_fires_on_its_own_case_and_clean_text_gets_none():
    assert flags("the weather today is quite nice and sunny") == []
    assert flags("la " * 40, duration_s=30.0) == ["repeated_ngrams", "high_compression"]
    assert flags("some text here", kept_no_speech=(0.9,)) == ["no_speech_text"]
    assert flags("the weather today is quite nice and sunny", duration_s=0.5) == ["too_long"]


def test_thresholds_turned_off_turn_their_flags_off():
    assert flags("la " * 40, duration_s=30.0, compression_ratio_threshold=None) == [
        "repeated_ngrams"
    ]
    assert flags("some text here", kept_no_speech=(0.9,), no_speech_threshold=None) == []
    assert flags("", kept_no_speech=(0.9,)) == []  # silence with no text is not a flag
