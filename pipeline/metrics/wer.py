"""Word and character edit counts, and corpus error rates built from them.

We store edit counts per item, not rates, because the only honest corpus WER is
total edits over total reference words: a mean of per-item rates lets a
two-word item weigh as much as a two-hundred-word one. Inputs are expected to be
normalised already (see `pipeline.text.normalize`, whose every normaliser
collapses whitespace): jiwer's default transforms only strip the ends and split
words on " " (a tab does not separate words), and characters include the spaces
between words, as `jiwer.cer` counts them.

One jiwer call per item is cheap enough. On 10-word sentences (2-core shared
machine, jiwer 4.0) `word_edits` ran ~46,000 items/s and `char_edits` ~36,000,
against ~75,000 and ~49,000 for jiwer given the whole list at once (before any
per-item bookkeeping). The score stage as a whole does ~9,500 items/s per task
with the `basic` normaliser and ~2,700 with `whisper_english`, so a batch variant
would save at most ~15%; per-item calls also keep one bad item from failing its
neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import jiwer


@dataclass(frozen=True)
class EditCounts:
    """A Levenshtein alignment of a hypothesis against a reference, as counts.

    Units are words for `word_edits` and characters for `char_edits`; the field
    is called `ref_words` in both cases so word and character counts share one
    type (for characters it holds the number of reference characters).
    """

    ref_words: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int

    def __post_init__(self) -> None:
        counts = (self.ref_words, self.hits, self.substitutions, self.deletions, self.insertions)
        if min(counts) < 0:
            raise ValueError(f"edit counts must not be negative: {self}")
        if self.ref_words != self.hits + self.substitutions + self.deletions:
            raise ValueError(f"ref_words must equal hits + substitutions + deletions: {self}")

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float | None:
        """Errors per reference unit; None with no reference units (undefined, not 0)."""
        return self.errors / self.ref_words if self.ref_words else None


def word_edits(ref: str, hyp: str) -> EditCounts:
    """Word-level edits turning `ref` into `hyp` (both already normalised)."""
    return _counts(jiwer.process_words(ref, hyp))


def char_edits(ref: str, hyp: str) -> EditCounts:
    """Character-level edits, spaces included, turning `ref` into `hyp`."""
    return _counts(jiwer.process_characters(ref, hyp))


def _counts(out: jiwer.WordOutput | jiwer.CharacterOutput) -> EditCounts:
    # jiwer 4.0 accepts empty strings on either side (an empty reference gives
    # only insertions); older releases raised, which the version pin rules out.
    return EditCounts(
        ref_words=out.hits + out.substitutions + out.deletions,
        hits=out.hits,
        substitutions=out.substitutions,
        deletions=out.deletions,
        insertions=out.insertions,
    )


def corpus_wer(counts: Iterable[EditCounts]) -> float | None:
    """Total errors over total reference units; None when there are none.

    Unlike `jiwer.wer`, which returns the insertion count when the references
    hold no words at all, an undefined rate stays undefined here.
    """
    errors = ref_words = 0
    for c in counts:
        errors += c.errors
        ref_words += c.ref_words
    return errors / ref_words if ref_words else None
