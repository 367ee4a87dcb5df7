"""Likely-hallucination checks on one transcript, written to `{task}__flags`.

Whisper's known failure modes leave marks in the text alone: it loops (the same phrase
over and over), it writes text over silence (a high no-speech probability and yet a
confident transcript), and it writes far more than the audio could hold. Each check
below names one flag; an item gets every flag that fires, in this order, or an empty
list when it was checked and nothing fired:

- `repeated_ngrams`: some run of 1-8 words is said at least 3 times back to back and the
  repetition spans at least 6 words ("no no no" passes; "thank you thank you thank you"
  does not). Scripts written without spaces (Chinese, Japanese, Thai...) count characters
  instead, spanning at least 12;
- `high_compression`: zlib compression ratio of the text above the task's
  `compression_ratio_threshold` (OpenAI's measure: repetitive text compresses well);
- `no_speech_text`: a window whose no-speech probability exceeds `no_speech_threshold`
  still produced text (it was confident enough not to count as silence);
- `too_long`: more than 25 characters per second of audio (plus 15), or more than 7 words
  per second (plus 3). Fast speech is ~20 characters or ~4 words per second.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass

REPEATED_NGRAMS = "repeated_ngrams"
HIGH_COMPRESSION = "high_compression"
NO_SPEECH_TEXT = "no_speech_text"
TOO_LONG = "too_long"

MAX_NGRAM = 8
MIN_REPEATS = 3
MIN_SPAN_WORDS = 6
MIN_SPAN_CHARS = 12
MAX_CHARS_PER_S, SLACK_CHARS = 25.0, 15
MAX_WORDS_PER_S, SLACK_WORDS = 7.0, 3

_PUNCTUATION = re.compile(r"[^\w\s']", re.UNICODE)


@dataclass(frozen=True)
class FlagInputs:
    """What the checks look at for one item."""

    text: str
    duration_s: float
    compression_ratio: float | None
    # No-speech probability of each window whose text was kept (not judged silence).
    kept_no_speech: tuple[float, ...] = ()


def compression_ratio(text: str) -> float:
    """OpenAI's measure: UTF-8 bytes over zlib-compressed bytes (0 for empty text)."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def _units(text: str) -> tuple[list[str], int]:
    """Words (lowercased, punctuation dropped), or characters for unspaced scripts."""
    cleaned = _PUNCTUATION.sub(" ", text.lower())
    words = cleaned.split()
    if _mostly_unspaced_script(text):
        return [c for c in cleaned if not c.isspace()], MIN_SPAN_CHARS
    return words, MIN_SPAN_WORDS


def _mostly_unspaced_script(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    wide = sum(
        unicodedata.east_asian_width(c) in "WF" or "\u0e00" <= c <= "\u0eff" for c in letters
    )
    return bool(letters) and wide * 2 >= len(letters)


def has_repeated_ngrams(text: str) -> bool:
    """True when some n-gram repeats back to back `MIN_REPEATS`+ times over a long span."""
    units, min_span = _units(text)
    for n in range(1, MAX_NGRAM + 1):
        needed = max(MIN_REPEATS, -(-min_span // n))  # repeats that cover the span
        if n * needed > len(units):
            break
        for start in range(n):  # a repetition may begin at any offset
            run = 1
            for i in range(start + n, len(units) - n + 1, n):
                run = run + 1 if units[i : i + n] == units[i - n : i] else 1
                if run >= needed:
                    return True
    return False


def is_too_long(text: str, duration_s: float) -> bool:
    chars = sum(not c.isspace() for c in text)
    words = len(text.split())
    return (
        chars > MAX_CHARS_PER_S * duration_s + SLACK_CHARS
        or words > MAX_WORDS_PER_S * duration_s + SLACK_WORDS
    )


def hallucination_flags(
    item: FlagInputs,
    *,
    compression_ratio_threshold: float | None,
    no_speech_threshold: float | None,
) -> list[str]:
    """The flags that fire for one item (see the module doc); [] when none."""
    flags = []
    if item.text and has_repeated_ngrams(item.text):
        flags.append(REPEATED_NGRAMS)
    if (
        compression_ratio_threshold is not None
        and item.compression_ratio is not None
        and item.compression_ratio > compression_ratio_threshold
    ):
        flags.append(HIGH_COMPRESSION)
    if (
        item.text
        and no_speech_threshold is not None
        and any(p > no_speech_threshold for p in item.kept_no_speech)
    ):
        flags.append(NO_SPEECH_TEXT)
    if item.text and is_too_long(item.text, item.duration_s):
        flags.append(TOO_LONG)
    return flags
