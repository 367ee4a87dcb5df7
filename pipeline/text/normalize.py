"""Named text normalisers applied to reference and hypothesis before WER/CER.

A WER is only comparable with another WER computed under the same normaliser, so
the normaliser's name is written next to every score in the output tables. The
names are therefore a contract: changing what a name does changes the meaning of
tables already written. Add a new name instead of changing an existing one.

- `none`: the text as given, only whitespace runs collapsed to one space and
  the ends stripped (what any word split would do anyway).
- `basic`: language-neutral cleanup; see `BasicNormalizer` for the exact rules.
- `whisper_english`: OpenAI Whisper's English normaliser, the one behind
  Whisper's published English WERs (numbers spelled out become digits, British
  spellings become American, contractions and titles are expanded, fillers and
  bracketed annotations removed). We run transformers' copy of the code,
  `transformers.models.whisper.english_normalizer.EnglishTextNormalizer`,
  which gives the same output as the `openai-whisper` package (checked on
  Whisper's own normaliser tests and on 20,000 random sentences).

`english_spelling.json` (British -> American spellings, 1,739 entries) is copied
unchanged from the `openai-whisper` package (version 20250625,
`whisper/normalizers/english.json`), under its licence:

    MIT License. Copyright (c) 2022 OpenAI.
    Permission is hereby granted, free of charge, to any person obtaining a copy
    of this software and associated documentation files (the "Software"), to
    deal in the Software without restriction, including without limitation the
    rights to use, copy, modify, merge, publish, distribute, sublicense, and/or
    sell copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions: The above
    copyright notice and this permission notice shall be included in all copies
    or substantial portions of the Software. THE SOFTWARE IS PROVIDED "AS IS",
    WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import unicodedata
from collections.abc import Callable
from importlib import resources
from typing import Protocol

SPELLING_RESOURCE = "english_spelling.json"


class Normalizer(Protocol):
    """A named text normaliser: `name` is what the output tables record."""

    name: str

    def __call__(self, text: str) -> str: ...


def _collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


class WhitespaceNormalizer:
    """`none`: leaves the words alone; only collapses whitespace and strips the ends."""

    name = "none"

    def __call__(self, text: str) -> str:
        return _collapse_whitespace(text)


# Typographic apostrophes people and models write in place of U+0027.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'"})
# Invisible characters that would otherwise glue words together or split one.
_INVISIBLE = str.maketrans({"\u00ad": None, "\u200b": " ", "\ufeff": None})
_DIGIT_GROUPING = re.compile(r"(?<=\d),(?=\d)")


@functools.cache
def _punctuation_pattern() -> re.Pattern[str]:
    """Every Unicode punctuation character (category P*), except the kept cases.

    Built on first use (about 0.2 s) rather than at import: the stdlib `re`
    has no `\\p{P}` class, so the class is enumerated from `unicodedata`.
    """
    chars = (chr(c) for c in range(sys.maxunicode + 1))
    punct = "".join(c for c in chars if unicodedata.category(c).startswith("P"))
    keep_apostrophe = r"(?<=\w)'(?=\w)"
    keep_decimal_point = r"(?<=\d)\.(?=\d)"
    return re.compile(f"(?!{keep_apostrophe})(?!{keep_decimal_point})[{re.escape(punct)}]")


class BasicNormalizer:
    """`basic`: a language-neutral cleanup, applied in this order:

    1. Unicode NFKC (full-width letters, ligatures such as "ﬁ" and compatibility
       digits become their plain forms), then `str.casefold()` ("Straße" ->
       "strasse").
    2. U+2019 and U+02BC (typographic apostrophes) become "'"; soft hyphens and
       byte-order marks are removed, zero-width spaces become spaces.
    3. A comma between two digits is removed ("1,000" -> "1000").
    4. Every character in a Unicode punctuation category (P*) becomes a space,
       except an apostrophe between two word characters ("don't", "o'clock"
       stay) and a period between two digits ("3.14" stays). So hyphens and
       dashes separate words ("well-known" -> "well known"), quotes and
       leading/trailing apostrophes go ("'tis" -> "tis"), "10:30" -> "10 30".
    5. Whitespace runs collapse to one space; the ends are stripped.

    Symbols (categories S*: "$", "+", "€", emoji) and diacritics are kept, and
    numbers are not spelled out or converted: "basic" must not assume English.
    """

    name = "basic"

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text).casefold()
        text = text.translate(_APOSTROPHES).translate(_INVISIBLE)
        text = _DIGIT_GROUPING.sub("", text)
        text = _punctuation_pattern().sub(" ", text)
        return _collapse_whitespace(text)


class WhisperEnglishNormalizer:
    """`whisper_english`: Whisper's `EnglishTextNormalizer`, ends stripped.

    transformers is imported on first call, not at construction: the spec
    validator and the CLI build normalisers to check names and must stay fast.
    """

    name = "whisper_english"

    def __init__(self) -> None:
        self._impl: Callable[[str], str] | None = None

    def __call__(self, text: str) -> str:
        if self._impl is None:
            self._impl = _load_whisper_english()
        # Whisper's version can leave a leading or trailing space (e.g. after a
        # removed "%"); that would count as a character in CER.
        return _collapse_whitespace(self._impl(text))


def _load_whisper_english() -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    spelling = resources.files(__package__).joinpath(SPELLING_RESOURCE).read_text("utf-8")
    return EnglishTextNormalizer(json.loads(spelling))


_NORMALIZERS: dict[str, Callable[[], Normalizer]] = {
    WhitespaceNormalizer.name: WhitespaceNormalizer,
    BasicNormalizer.name: BasicNormalizer,
    WhisperEnglishNormalizer.name: WhisperEnglishNormalizer,
}
NORMALIZER_NAMES: tuple[str, ...] = tuple(_NORMALIZERS)


def get_normalizer(name: str) -> Normalizer:
    """The normaliser called `name`; raises ValueError naming the valid ones."""
    factory = _NORMALIZERS.get(name)
    if factory is None:
        valid = ", ".join(repr(n) for n in NORMALIZER_NAMES)
        raise ValueError(f"unknown text normaliser {name!r}: expected one of {valid}")
    return factory()
