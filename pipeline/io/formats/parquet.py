"""The `parquet` input format: Parquet shards with an audio-bytes column.

The audio column (`input.audio_column`) holds bytes or the Hugging Face `{bytes,
path}` struct; `input.text_column`, when present, is the reference. A row's member
key is its row number. A row without bytes, or with too many, becomes an error row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa

from pipeline.columns import ITEM_SCHEMA
from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.formats.shard import require, shard_failed, shard_units
from pipeline.io.idset import IdSet
from pipeline.io.storage import filesystem
from pipeline.io.units import InputFormat, Listing, WorkUnit, audio_row
from pipeline.spec import InputSpec


def list_units(
    listing: Listing, spec: InputSpec, per_unit: int, done: IdSet
) -> tuple[list[WorkUnit], int]:
    shards = sorted(p for p in listing.files if p.lower().endswith(".parquet"))
    return shard_units(
        listing, require(shards, ".parquet shards", spec.uri), "parquet", spec.limit
    ), 0


def read_rows(unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int) -> Iterator[dict]:
    import pyarrow.parquet as pq

    fs, _ = filesystem(spec.uri, spec.storage)
    index = 0
    try:
        with fs.open(fs._strip_protocol(unit.shard_uri), "rb") as f:
            pf = pq.ParquetFile(f)
            columns = _columns(pf, spec)
            for record_batch in pf.iter_batches(batch_size=batch, columns=columns):
                for row in record_batch.to_pylist():
                    yield _row(unit, index, row, spec, max_bytes)
                    index += 1
    except (pa.ArrowInvalid, OSError, InputError) as exc:
        yield shard_failed(unit, f"parquet shard could not be read (after {index} rows): {exc}")


FORMAT = InputFormat("parquet", ITEM_SCHEMA, list_units, read_rows)


def _columns(pf, spec: InputSpec) -> list[str]:
    names = pf.schema_arrow.names
    if spec.audio_column not in names:
        raise InputError(
            f"no audio column '{spec.audio_column}' (input.audio_column); columns: {', '.join(names)}"
        )
    return [spec.audio_column] + ([spec.text_column] if spec.text_column in names else [])


def _row(unit: WorkUnit, index: int, row: dict, spec: InputSpec, max_bytes: int) -> dict:
    audio = row[spec.audio_column]
    data, path = (
        (audio.get("bytes"), audio.get("path")) if isinstance(audio, dict) else (audio, None)
    )
    text = row.get(spec.text_column) if spec.text_column else None
    metadata = json.dumps({"path": path}) if path else None
    error = None
    if data is None:
        error = RowError(
            ErrorCode.MISSING_AUDIO, f"{unit.shard_uri} row {index} has no audio bytes"
        )
    elif len(data) > max_bytes:
        error, data = (
            RowError(
                ErrorCode.TOO_LARGE,
                f"{unit.shard_uri} row {index} is {len(data) / 2**20:.1f} MiB, over decode.max_file_mb",
            ),
            None,
        )
    return audio_row(
        unit.shard_uri, f"row={index}", unit.shard, data, text=text, metadata=metadata, error=error
    )
