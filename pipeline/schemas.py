"""Schemas of the output tables, checked on every write and against `schemas/*.json` in tests.

Tables are Hive-partitioned: `transcripts/task=<task>/`, `errors/stage=<stage>/`,
`runs/job=<job>/`. The partition value is in the folder name and, the same, in the last
column of every file, so Hive-unaware readers (`datasets.load_dataset("parquet")`, a plain
`pyarrow.parquet.read_table`) still see which task a row belongs to; DuckDB
(`hive_partitioning=true`) and pyarrow (`partitioning="hive"`) read both alike.
Every file of a table has its table's schema (`conform`): the query views read a table's
files as one schema (`pipeline/query/views.py`), so adding a column needs them changed too.
"""

from __future__ import annotations

import json

import pyarrow as pa

from pipeline.errors import AudiobatchError

WORD = pa.struct([("word", pa.string()), ("start", pa.float64()), ("end", pa.float64())])
SEGMENT = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])
LABEL_SCORE = pa.struct([("label", pa.string()), ("score", pa.float64())])
WINDOW = pa.struct(
    [("start", pa.float64()), ("end", pa.float64()), ("labels", pa.list_(LABEL_SCORE))]
)
LABELLED_SEGMENT = pa.struct(
    [
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("label", pa.string()),
        ("score", pa.float64()),
    ]
)


def _partition(name: str) -> pa.Field:
    """The partition column, written into the files too (see the module docstring)."""
    return pa.field(name, pa.string(), nullable=False)


# Every per-item table starts with the item's stable id and where it came from.
ITEM_KEYS = [
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("member", pa.string(), nullable=False),
    pa.field("shard", pa.string(), nullable=False),
]

# Per-item WER/CER edit counts and the normaliser that produced them (`stages/score.py`).
SCORE_COUNTS = [
    pa.field("normalizer", pa.string()),
    pa.field("ref_words", pa.int32()),
    pa.field("substitutions", pa.int32()),
    pa.field("deletions", pa.int32()),
    pa.field("insertions", pa.int32()),
    pa.field("wer", pa.float64()),
    pa.field("ref_chars", pa.int32()),
    pa.field("char_edits", pa.int32()),
    pa.field("cer", pa.float64()),
]

TRANSCRIPTS = pa.schema(
    [
        *ITEM_KEYS,
        pa.field("duration_s", pa.float64()),
        pa.field("model", pa.string()),
        pa.field("model_revision", pa.string()),
        pa.field("text", pa.string()),
        pa.field("language", pa.string()),
        pa.field("language_prob", pa.float64()),
        pa.field("segments", pa.list_(SEGMENT)),
        pa.field("words", pa.list_(WORD)),
        pa.field("confidence", pa.float64()),
        pa.field("avg_logprob", pa.float64()),
        pa.field("no_speech_prob", pa.float64()),
        pa.field("compression_ratio", pa.float64()),
        # Likely-hallucination flags (Whisper): repeated_ngrams, high_compression,
        # no_speech_text, too_long. Empty list: checked, nothing found; null: not checked.
        pa.field("flags", pa.list_(pa.string())),
        pa.field("reference", pa.string()),
        *SCORE_COUNTS,
        pa.field("metadata", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        _partition("task"),
    ]
)

CLASSIFICATIONS = pa.schema(
    [
        *ITEM_KEYS,
        pa.field("duration_s", pa.float64()),
        pa.field("model", pa.string()),
        pa.field("model_revision", pa.string()),
        # Clip classifiers: top-k labels, best first (pooled over windows for long items).
        pa.field("labels", pa.list_(LABEL_SCORE)),
        pa.field("windows", pa.list_(WINDOW)),  # per-window labels, when asked for
        # Frame classifiers: labelled segments in time order.
        pa.field("segments", pa.list_(LABELLED_SEGMENT)),
        pa.field("metadata", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        _partition("task"),
    ]
)

SYNTHESES = pa.schema(
    [
        *ITEM_KEYS,  # source_uri: the text table
        pa.field("text_id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("normalized_text", pa.string()),  # what was spoken (numbers spelled out)
        pa.field("speaker", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_revision", pa.string()),
        pa.field("audio_uri", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("n_frames", pa.int32()),  # mel frames generated
        pa.field("runaway", pa.bool_()),  # some piece hit the maximum length
        pa.field("empty", pa.bool_()),  # no audio came out
        # Signal metrics: speaking rate and silence, clipping and level.
        pa.field("chars_per_s", pa.float64()),
        pa.field("leading_silence_s", pa.float64()),
        pa.field("trailing_silence_s", pa.float64()),
        pa.field("silence_share", pa.float64()),
        pa.field("clipping_share", pa.float64()),
        pa.field("rms_dbfs", pa.float64()),
        # Round trip: the named ASR task's transcript of this audio, scored against `text`.
        pa.field("roundtrip_task", pa.string()),
        pa.field("transcript", pa.string()),
        *SCORE_COUNTS,
        pa.field("metadata", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        _partition("task"),
    ]
)

ERRORS = pa.schema(
    [
        *ITEM_KEYS,
        # The task whose output this item is missing from; null: every task (read/decode).
        pa.field("task", pa.string()),
        pa.field("error_code", pa.string(), nullable=False),
        pa.field("error_message", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        # The item's manifest/shard extras (original path, speaker, the user's id...), so a
        # failed item can be found by what its corpus calls it.
        pa.field("metadata", pa.string()),
        _partition("stage"),
    ]
)

STAGE_STATS = pa.struct(
    [
        ("stage", pa.string()),
        ("items", pa.int64()),
        ("audio_s", pa.float64()),
        ("busy_s", pa.float64()),
    ]
)

TASK_STATS = pa.struct([("task", pa.string()), ("ok", pa.int64()), ("failed", pa.int64())])

RUNS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("spec_hash", pa.string(), nullable=False),
        pa.field("spec_json", pa.string(), nullable=False),
        pa.field("versions", pa.string(), nullable=False),  # JSON: package -> version
        pa.field("started_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("ended_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # succeeded | failed | interrupted
        pa.field("items", pa.int64(), nullable=False),  # items this run wrote (ok + errors)
        pa.field("items_ok", pa.int64(), nullable=False),
        pa.field("items_failed", pa.int64(), nullable=False),
        pa.field("audio_s", pa.float64(), nullable=False),
        pa.field("wall_s", pa.float64(), nullable=False),
        pa.field("stages", pa.list_(STAGE_STATS)),
        pa.field("message", pa.string()),
        # The nightly history (`audiobatch runs`). Nullable: runs written before these
        # columns existed read back with nulls; null also means "not known" for a run.
        pa.field("units", pa.int64()),  # work units read this run
        pa.field("skipped_units", pa.int64()),  # units left unread: every item already done
        pa.field("already_done", pa.int64()),  # items skipped because an earlier run wrote them
        pa.field("new_items", pa.int64()),  # items written this run with no earlier outcome
        pa.field("retried_errors", pa.int64()),  # items retried after an earlier error
        pa.field("changed_sources", pa.list_(pa.string())),  # sources changed since written
        pa.field("tasks", pa.list_(TASK_STATS)),
        pa.field("items_per_s", pa.float64()),
        pa.field("realtime_factor", pa.float64()),  # audio seconds per wall second
        _partition("job"),
    ]
)

TABLES: dict[str, tuple[pa.Schema, str]] = {
    "transcripts": (TRANSCRIPTS, "task"),
    "classifications": (CLASSIFICATIONS, "task"),
    "syntheses": (SYNTHESES, "task"),
    "errors": (ERRORS, "stage"),
    "runs": (RUNS, "job"),
}

# The tables task kinds write (`contract.MODEL_STAGES`), one row per item and task: the
# query views give each a `latest` view (`query/views.py`), the report an entry
# (`reports/results.py`).
RESULT_TABLES = ("transcripts", "classifications", "syntheses")


class SchemaMismatch(AudiobatchError):
    """A table about to be written does not match its declared schema."""


# Columns added to a table after its first release: a writer that predates them (or a
# run that does not know them) may leave them out, and they are written as nulls.
ADDED_LATER: dict[str, frozenset[str]] = {
    "errors": frozenset({"metadata"}),
    # The model's resolved revision (pipeline/models/revision.py); older files lack it.
    "transcripts": frozenset({"model_revision"}),
    "classifications": frozenset({"model_revision"}),
    "syntheses": frozenset({"model_revision"}),
    "runs": frozenset(
        {
            "units",
            "skipped_units",
            "already_done",
            "new_items",
            "retried_errors",
            "changed_sources",
            "tasks",
            "items_per_s",
            "realtime_factor",
        }
    ),
}


def conform(table: pa.Table, name: str) -> pa.Table:
    """Select and order the schema's columns and cast to its types; raise on anything
    missing (except the nullable columns in `ADDED_LATER`, which become nulls)."""
    schema = TABLES[name][0]
    for f in schema:
        if f.name in ADDED_LATER.get(name, ()) and f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise SchemaMismatch(f"{name}: missing columns {', '.join(missing)}")
    try:
        # The cast also refuses nulls in non-nullable fields.
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise SchemaMismatch(f"{name}: cannot conform to schema: {exc}") from None


def schema_json(name: str) -> dict:
    """A language-neutral description of a table schema (what `schemas/<name>.json` holds)."""
    schema, partition = TABLES[name]
    return {
        "table": name,
        "partitioned_by": partition,
        "columns": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
    }


def render_all() -> dict[str, str]:
    """File name -> content for every schema file under `schemas/`."""
    from pipeline.spec import json_schema

    files = {f"{n}.schema.json": json.dumps(schema_json(n), indent=2) + "\n" for n in TABLES}
    files["job_spec.schema.json"] = json.dumps(json_schema(), indent=2) + "\n"
    return files
