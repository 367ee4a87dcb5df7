"""Word alignments of reference and hypothesis, and sclite's error tallies built from them.

`align(ref, hyp)` gives the Levenshtein alignment jiwer 4 computes (the same one the score
stage counts edits from, so its substitutions / deletions / insertions equal the row's),
as a list of `Aligned` words: `C` correct, `S` substituted, `D` deleted, `I` inserted.

`Tally` counts, over many alignments, what sclite's `-o dtl` report prints: the
confusion pairs (reference word -> hypothesis word, for substitutions), the deleted
reference words and the inserted hypothesis words, most frequent first. Texts must be
normalised first (the report uses the normaliser named in the row), like for scoring.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

_OPS = {"equal": "C", "substitute": "S", "delete": "D", "insert": "I"}


@dataclass(frozen=True)
class Aligned:
    """One aligned position: `op` is C, S, D or I; `ref` is empty for I, `hyp` for D."""

    op: str
    ref: str
    hyp: str


def align(ref: str, hyp: str) -> list[Aligned]:
    """The word alignment of normalised `hyp` against normalised `ref`."""
    import jiwer

    out = jiwer.process_words(ref, hyp)
    r, h = out.references[0], out.hypotheses[0]
    aligned: list[Aligned] = []
    for chunk in out.alignments[0]:
        op = _OPS[chunk.type]
        rs, re_ = chunk.ref_start_idx, chunk.ref_end_idx
        hs, he = chunk.hyp_start_idx, chunk.hyp_end_idx
        if op in ("C", "S"):
            aligned += [Aligned(op, r[rs + k], h[hs + k]) for k in range(re_ - rs)]
        elif op == "D":
            aligned += [Aligned("D", w, "") for w in r[rs:re_]]
        else:
            aligned += [Aligned("I", "", w) for w in h[hs:he]]
    return aligned


@dataclass
class Tally:
    """Substitution pairs, deletions and insertions counted over alignments."""

    items: int = 0
    substitutions: Counter = field(default_factory=Counter)
    deletions: Counter = field(default_factory=Counter)
    insertions: Counter = field(default_factory=Counter)

    def add(self, aligned: list[Aligned]) -> None:
        """Count one item's alignment."""
        self.items += 1
        for a in aligned:
            if a.op == "S":
                self.substitutions[(a.ref, a.hyp)] += 1
            elif a.op == "D":
                self.deletions[a.ref] += 1
            elif a.op == "I":
                self.insertions[a.hyp] += 1

    def top(self, n: int = 20) -> dict:
        """The `n` most frequent of each kind, ties by word, as JSON-able lists."""

        def ranked(counter: Counter) -> list:
            return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

        return {
            "items": self.items,
            "substitutions": [
                {"ref": r, "hyp": h, "count": c} for (r, h), c in ranked(self.substitutions)
            ],
            "deletions": [{"ref": w, "count": c} for w, c in ranked(self.deletions)],
            "insertions": [{"hyp": w, "count": c} for w, c in ranked(self.insertions)],
            "totals": {
                "substitutions": sum(self.substitutions.values()),
                "deletions": sum(self.deletions.values()),
                "insertions": sum(self.insertions.values()),
            },
        }


def as_rows(aligned: list[Aligned]) -> list[dict]:
    """An alignment as JSON-able rows (what report.json and the HTML template show)."""
    return [{"op": a.op, "ref": a.ref, "hyp": a.hyp} for a in aligned]
