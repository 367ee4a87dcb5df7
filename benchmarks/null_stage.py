"""A model stage that costs nothing, for measuring what feeding a model costs
(benchmarks/bench_feed_cpu.py). Test-only: not a spec kind, never planned by a job.

It adds a CTC task's columns (empty transcripts), so score and the sink do their usual
work, and drops the audio as a model stage's output would not carry it further.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pipeline.columns import AUDIO, task_column
from pipeline.stages.base import Stage, StageOutput

WORDS = pa.list_(pa.struct([("word", pa.string()), ("start", pa.float64()), ("end", pa.float64())]))


class NullModelStage(Stage):
    def __init__(self, task: str):
        self.name = self.task = task

    def reads(self) -> Sequence[str]:
        return (AUDIO,)

    def adds(self) -> pa.Schema:
        types = {
            "text": pa.string(),
            "words": WORDS,
            "confidence": pa.float64(),
            "model": pa.string(),
        }
        return pa.schema([pa.field(task_column(self.name, f), t) for f, t in types.items()])

    def process(self, rows: pa.Table) -> StageOutput:
        n = rows.num_rows
        columns = {
            task_column(self.name, "text"): [""] * n,
            task_column(self.name, "words"): [[]] * n,
            task_column(self.name, "confidence"): [0.0] * n,
            task_column(self.name, "model"): ["null"] * n,
        }
        return StageOutput(columns=columns)
