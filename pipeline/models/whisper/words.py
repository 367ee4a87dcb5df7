"""Grouping Whisper text tokens into words, as OpenAI's tokenizer does for word timestamps.

1. Tokens are joined into unicode pieces: a byte-level token can end in the middle of a
   UTF-8 character, so bytes accumulate until they decode.
2. For scripts written with spaces, a piece that starts with a space or is punctuation
   starts a new word; other pieces join the current word. For Chinese, Japanese, Thai,
   Lao, Burmese and Cantonese every piece is a word.
3. Opening punctuation joins the next word, closing punctuation the previous one.

This is OpenAI's `split_to_word_tokens` + `merge_punctuations` (also transformers'
`_combine_tokens_into_words`), in one pass over bytes instead of re-decoding a growing
token list (quadratic in the window's length).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

PREPEND = "\"'“¿([{-"
APPEND = "\"'.。,，!！?？:：”)]}、"
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


@dataclass
class Word:
    text: str  # with its leading space, as decoded
    indices: list[int]  # positions of its tokens in the token list


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted (byte-level BPE token chars -> bytes)."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def token_bytes(tokenizer: Any, ids: list[int]) -> list[bytes]:
    """The raw bytes each text token stands for."""
    table = _byte_decoder()
    out = []
    for piece in tokenizer.convert_ids_to_tokens(ids):
        if all(ch in table for ch in piece):
            out.append(bytes(table[ch] for ch in piece))
        else:  # not a byte-level token (an added token): its text
            out.append(piece.encode("utf-8"))
    return out


def _utf8_state(raw: bytes) -> str:
    """ "ok", "incomplete" (ends inside a character) or "invalid"."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "incomplete" if exc.reason == "unexpected end of data" else "invalid"
    return "ok"


def unicode_pieces(pieces: list[bytes]) -> list[Word]:
    """Tokens joined until their bytes decode as UTF-8.

    Bytes that can never decode (a model can emit any byte token) become a piece of
    their own, decoded with replacement characters as `tokenizer.decode` shows them.
    """
    words: list[Word] = []
    buffer, indices = b"", []
    for i, raw in enumerate(pieces):
        if buffer and _utf8_state(buffer + raw) == "invalid":
            words.append(Word(buffer.decode("utf-8", errors="replace"), indices))
            buffer, indices = b"", []
        buffer += raw
        indices.append(i)
        state = _utf8_state(buffer)
        if state != "incomplete":
            words.append(Word(buffer.decode("utf-8", errors="replace"), indices))
            buffer, indices = b"", []
    if indices:  # a character cut off at the end
        words.append(Word(buffer.decode("utf-8", errors="replace"), indices))
    return words


def split_words(tokenizer: Any, ids: list[int], spaced: bool = True) -> list[Word]:
    """Words of the text token ids `ids` (no specials, no timestamps)."""
    pieces = unicode_pieces(token_bytes(tokenizer, ids))
    if not spaced:
        return _merge_punctuation(pieces)
    words: list[Word] = []
    for piece in pieces:
        starts_word = piece.text.startswith(" ") or piece.text.strip() in _PUNCTUATION
        if starts_word or not words:
            words.append(Word(piece.text, list(piece.indices)))
        else:
            words[-1].text += piece.text
            words[-1].indices += piece.indices
    return _merge_punctuation(words)


def _merge_punctuation(words: list[Word]) -> list[Word]:
    """OpenAI's `merge_punctuations`: opening marks join the next word, closing the previous."""
    words = [Word(w.text, list(w.indices)) for w in words]
    i, j = len(words) - 2, len(words) - 1
    while i >= 0:
        if words[i].text.startswith(" ") and words[i].text.strip() in PREPEND:
            words[j].text = words[i].text + words[j].text
            words[j].indices = words[i].indices + words[j].indices
            words[i] = Word("", [])
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(words):
        if not words[i].text.endswith(" ") and words[j].text in APPEND:
            words[i].text += words[j].text
            words[i].indices += words[j].indices
            words[j] = Word("", [])
        else:
            i = j
        j += 1
    return [w for w in words if w.text]
