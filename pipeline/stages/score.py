"""Per-item WER/CER edit counts for each task's transcript against the reference.

The stage writes counts (reference words, substitutions, deletions, insertions;
reference characters, character edits) rather than only rates, so reports can
compute corpus WER as total edits over total reference words over any slice of
the output. The normaliser's name is written beside the counts because a WER
means nothing without it.

Scoring is optional: a row without a reference gets nulls and no error. A row
whose task already failed is not scored for that task. One row that makes the
normaliser or the aligner raise is recorded as `score_failed` for the task(s)
concerned and does not affect the rest of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from pipeline.columns import REFERENCE, task_column
from pipeline.contract import score_columns
from pipeline.errors import ErrorCode, RowError
from pipeline.metrics.wer import char_edits, word_edits
from pipeline.schemas import SCORE_COUNTS
from pipeline.stages.base import Stage, StageOutput, healthy_mask
from pipeline.text.normalize import Normalizer, get_normalizer

# (field, type) added per task, in output order.
SCORE_FIELDS: tuple[tuple[str, pa.DataType], ...] = tuple((f.name, f.type) for f in SCORE_COUNTS)
_NO_SCORE: dict[str, None] = {name: None for name, _ in SCORE_FIELDS}


@dataclass(frozen=True)
class _Scored:
    """One row's scores for every task, and the tasks whose scoring raised."""

    values: dict[str, dict[str, object]]  # task -> field -> value
    errors: dict[str, RowError]


class ScoreStage(Stage):
    """Adds `{task}__{field}` for every field in `SCORE_FIELDS` and every task.

    `normalizer` is one of `pipeline.text.normalize.NORMALIZER_NAMES`; it is
    applied to both the reference and the hypothesis. A healthy row whose
    transcript is null is scored as an empty hypothesis (all deletions).
    """

    name = "score"

    def __init__(self, tasks: Sequence[str], normalizer: str) -> None:
        if not tasks:
            raise ValueError("ScoreStage needs at least one task to score")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"ScoreStage tasks must be distinct, got {list(tasks)}")
        self.tasks = tuple(tasks)
        self.normalizer: Normalizer = get_normalizer(normalizer)

    def error_tasks(self) -> Sequence[str]:
        return self.tasks

    def reads(self) -> Sequence[str]:
        return score_columns(self.tasks).reads

    def adds(self) -> pa.Schema:
        return pa.schema(
            [
                pa.field(task_column(task, name), typ)
                for task in self.tasks
                for name, typ in SCORE_FIELDS
            ]
        )

    def process(self, rows: pa.Table) -> StageOutput:
        refs = rows.column(REFERENCE).to_pylist()
        hyps = {t: rows.column(task_column(t, "text")).to_pylist() for t in self.tasks}
        ok = {t: healthy_mask(rows, t) for t in self.tasks}
        out = StageOutput(columns={f.name: [] for f in self.adds()})
        for i, ref in enumerate(refs):
            live = {t: hyps[t][i] for t in self.tasks if ok[t][i]}
            scored = self._score_row(ref, live)
            for task, error in scored.errors.items():
                out.task_errors.setdefault(task, {})[i] = error
            for task in self.tasks:
                for name, value in scored.values.get(task, _NO_SCORE).items():
                    out.columns[task_column(task, name)].append(value)
        return out

    def _score_row(self, ref: str | None, hyps: dict[str, str | None]) -> _Scored:
        if ref is None or not hyps:
            return _Scored({}, {})
        try:
            norm_ref = self.normalizer(ref)
        except Exception as exc:  # see below
            return _Scored({}, {t: self._failed("the reference", exc) for t in hyps})
        values: dict[str, dict[str, object]] = {}
        errors: dict[str, RowError] = {}
        for task, hyp in hyps.items():
            # Normalisers and the aligner are third-party code fed arbitrary text:
            # whatever one item makes them raise must not fail its whole batch.
            try:
                values[task] = self._score_one(norm_ref, self.normalizer(hyp or ""))
            except Exception as exc:
                errors[task] = self._failed(f"task {task!r}", exc)
        return _Scored(values, errors)

    def _failed(self, where: str, exc: Exception) -> RowError:
        return RowError(
            ErrorCode.SCORE_FAILED,
            f"scoring {where} with normaliser {self.normalizer.name!r} raised "
            f"{type(exc).__name__}: {exc}",
        )

    def _score_one(self, ref: str, hyp: str) -> dict[str, object]:
        words = word_edits(ref, hyp)
        chars = char_edits(ref, hyp)
        return {
            "normalizer": self.normalizer.name,
            "ref_words": words.ref_words,
            "substitutions": words.substitutions,
            "deletions": words.deletions,
            "insertions": words.insertions,
            "wer": words.wer,
            "ref_chars": chars.ref_words,
            "char_edits": chars.errors,
            "cer": chars.wer,
        }
