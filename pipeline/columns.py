"""Names and Arrow types of the columns that flow between stages.

Rows are Arrow columns from read to sink. The read step fills the item columns,
decode adds the audio columns, and each task's stages add columns named
`{task}__{field}` so several tasks can share one decode. The sink maps these
onto the output table schemas in `pipeline/schemas.py`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Every name is re-exported (stages import names and types from here alone).
from pipeline.column_names import (
    AUDIO,
    AUDIO_BYTES,
    CHANNELS,
    DURATION_S,
    END_S,
    ERROR_CODE,
    ERROR_COLUMNS,
    ERROR_MESSAGE,
    ERROR_STAGE,
    INPUT_BYTES,
    ITEM_ID,
    MEMBER,
    METADATA,
    REFERENCE,
    SAMPLE_RATE,
    SHARD,
    SOURCE_SIZE,
    SOURCE_URI,
    SOURCE_VERSION,
    SPAN_CUT,
    SPEAKER,
    SPEAKER_EMBEDDING,
    START_S,
    TASK_DONE,
    TEXT,
    TEXT_ID,
    task_column,
)

# What the read step emits for every item (and for every unreadable shard).
ITEM_SCHEMA = pa.schema(
    [
        pa.field(ITEM_ID, pa.string(), nullable=False),
        pa.field(SOURCE_URI, pa.string(), nullable=False),
        pa.field(MEMBER, pa.string(), nullable=False),
        pa.field(SHARD, pa.string(), nullable=False),
        pa.field(AUDIO_BYTES, pa.binary()),
        pa.field(REFERENCE, pa.string()),
        pa.field(METADATA, pa.string()),  # JSON object of manifest/shard extras
        pa.field(INPUT_BYTES, pa.int64()),
        pa.field(START_S, pa.float64()),  # null: the whole file
        pa.field(END_S, pa.float64()),  # null: to the end of the file
        pa.field(CHANNELS, pa.list_(pa.int32())),  # null: every channel, downmixed
        pa.field(SPAN_CUT, pa.bool_()),  # audio_bytes is the span alone (io/segments.py)
        pa.field(ERROR_STAGE, pa.string()),
        pa.field(ERROR_CODE, pa.string()),
        pa.field(ERROR_MESSAGE, pa.string()),
    ]
)

# What the read step emits for the `texts` format (texts to synthesize): the item
# columns without audio bytes, plus the text and its speaker. `reference` holds the
# text too, so a round-trip transcript is scored against it like any other.
TEXT_ITEM_SCHEMA = pa.schema(
    [f for f in ITEM_SCHEMA if f.name not in (AUDIO_BYTES, START_S, END_S, CHANNELS, SPAN_CUT)]
    + [
        pa.field(TEXT_ID, pa.string()),
        pa.field(TEXT, pa.string()),
        pa.field(SPEAKER, pa.string()),
        pa.field(SPEAKER_EMBEDDING, pa.list_(pa.float32())),
    ]
)

# What decode adds (and it drops AUDIO_BYTES).
AUDIO_FIELDS = [
    pa.field(AUDIO, pa.list_(pa.float32())),
    pa.field(SAMPLE_RATE, pa.int32()),
    pa.field(DURATION_S, pa.float64()),
]


def audio_seconds(table: pa.Table) -> float:
    """Total `duration_s` of a batch (0 before decode has added it)."""
    if DURATION_S not in table.column_names:
        return 0.0
    import pyarrow.compute as pc

    return float(pc.sum(table.column(DURATION_S)).as_py() or 0.0)


def audio_arrays(column) -> tuple[list, np.ndarray, np.ndarray]:
    """Per-row float32 views of a list<float32> column (None for a null row), the one
    contiguous buffer they view, and each row's offsets into it (no copy of the samples
    when the column is already float32 in one chunk)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    rows = [values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(arr))]
    first, last = (offsets[0], offsets[-1]) if len(arr) else (0, 0)
    return rows, values[first:last], offsets - first
