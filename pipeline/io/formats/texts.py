"""The `texts` input format: tables of texts to synthesize (JSONL, CSV, TSV or Parquet).

Each listed table is one work unit. A row needs an id (`input.id_column`) and a text
(`input.text_column`); an optional speaker id (`input.speaker_column`) and an
optional speaker embedding (`input.embedding_column`, a list of floats) choose the
voice, and every other column is kept as the item's metadata.

An item's id is a hash of the table's URI and the text id, so a re-run finds the
same ids. A row without an id, or with an embedding that is not a list of numbers,
becomes an `invalid_input` error row; a text id seen before in the same table a
`duplicate_id` error row (keyed by its row number, so ids stay unique); an empty
text an `empty` one. A table that cannot be parsed is one `shard_corrupt` row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

from pipeline.columns import TEXT_ITEM_SCHEMA
from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.formats.shard import require, shard_paths, shard_units
from pipeline.io.idset import IdSet
from pipeline.io.manifest import read_table_file
from pipeline.io.units import InputFormat, Listing, WorkUnit, error_fields, item_id
from pipeline.spec import InputSpec

TEXT_EXTENSIONS = ("jsonl", "json", "ndjson", "csv", "tsv", "parquet")


def list_units(
    listing: Listing, spec: InputSpec, per_unit: int, done: IdSet
) -> tuple[list[WorkUnit], int]:
    tables = shard_paths(listing, lambda p: p.lower().rsplit(".", 1)[-1] in TEXT_EXTENSIONS)
    tables = require(tables, f"text tables ({', '.join(TEXT_EXTENSIONS)})", spec.uri)
    return shard_units(listing, tables, "texts", spec.limit, allow_outside=spec.allow_outside_paths)


def read_rows(unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int) -> Iterator[dict]:
    """One row of `columns.TEXT_ITEM_SCHEMA` per row of the table (or one for the table)."""
    if unit.error is not None:  # refused at listing (pipeline/io/formats/shard.py)
        yield _row(unit, "", None, None, None, None, None, unit.error)
        return
    try:
        table = read_table_file(unit.shard_uri, spec.storage, what="text table")
        text_col = spec.text_column or "text"
        missing = [c for c in (spec.id_column, text_col) if c not in table.column_names]
        if missing:
            raise InputError(
                f"text table {unit.shard_uri} has no column {', '.join(map(repr, missing))} "
                f"(input.id_column / input.text_column; columns: {', '.join(table.column_names)})"
            )
    except InputError as exc:
        error = RowError(ErrorCode.SHARD_CORRUPT, str(exc))
        yield _row(unit, "", None, None, None, None, None, error)
        return
    own = {spec.id_column, text_col, spec.speaker_column, spec.embedding_column}
    seen: set[str] = set()
    for index, r in enumerate(table.to_pylist()):
        raw_id, text = r.get(spec.id_column), r.get(text_col)
        meta = {k: v for k, v in r.items() if k not in own and v is not None}
        metadata = json.dumps(meta, default=str) if meta else None
        speaker = None if r.get(spec.speaker_column) is None else str(r[spec.speaker_column])
        embedding, error = _embedding(r.get(spec.embedding_column))
        text_id = None if raw_id is None or str(raw_id) == "" else str(raw_id)
        member = text_id
        if text_id is None:
            member, error = (
                f"row={index}",
                RowError(
                    ErrorCode.INVALID_INPUT,
                    f"{unit.shard_uri} row {index} has no `{spec.id_column}` (input.id_column)",
                ),
            )
        elif text_id in seen:
            member, error = (
                f"row={index}",
                RowError(
                    ErrorCode.DUPLICATE_ID,
                    f"{unit.shard_uri} row {index}: text id {text_id!r} appears earlier in the table",
                ),
            )
        elif error is None and (text is None or not str(text).strip()):
            error = RowError(ErrorCode.EMPTY, f"{unit.shard_uri}: text {text_id!r} is empty")
        if text_id is not None:
            seen.add(text_id)
        text = None if text is None else str(text)
        yield _row(unit, member, text_id, text, speaker, embedding, metadata, error)


FORMAT = InputFormat("texts", TEXT_ITEM_SCHEMA, list_units, read_rows)


def _embedding(value) -> tuple[list[float] | None, RowError | None]:
    if value is None:
        return None, None
    try:
        if isinstance(value, str):  # a JSONL column of mixed types arrives as text
            value = json.loads(value)
        vector = [float(x) for x in value]
    except (TypeError, ValueError):
        return None, RowError(ErrorCode.INVALID_INPUT, "speaker embedding is not a list of numbers")
    if not vector or not all(math.isfinite(x) for x in vector):
        return None, RowError(ErrorCode.INVALID_INPUT, "speaker embedding is empty or not finite")
    return vector, None


def _row(unit, member, text_id, text, speaker, embedding, metadata, error) -> dict:
    return {
        "item_id": item_id(unit.shard_uri, member),
        "source_uri": unit.shard_uri,
        "member": member,
        "shard": unit.shard,
        "reference": text,
        "metadata": metadata,
        "input_bytes": len(text.encode()) if text else 0,
        **error_fields(error),
        "text_id": text_id,
        "text": text,
        "speaker": speaker,
        "speaker_embedding": embedding,
    }
