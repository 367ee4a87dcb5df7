"""The `parquet` input format: Parquet shards, or `datasets.save_to_disk` folders, with an
audio column.

The audio column (`input.audio_column`) holds bytes or the Hugging Face `{bytes,
path}` struct; `input.text_column`, when present, is the reference, and every
other column reaches the item's metadata (with the struct's `path`). A struct with
null bytes and a `path` (what `datasets.to_parquet` writes for a dataset built from
files) is read from that path, relative to the shard or absolute, through the
input's filesystem, and refused outside the input unless
`input.allow_outside_paths`. `save_to_disk` folders (Arrow IPC `*.arrow` files and
`dataset_info.json`) are read the same way. A row's member key is its row number.
A row without audio, or with too much, becomes an error row. With `input.id_column`, a
row's id is its value there, unique across the input: a later row holding an id (in this
shard or another) is a duplicate_id error row naming both (`pipeline/io/own_ids.py`). A spec that names an
audio column the first shard does not have is refused before any work.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator

import pyarrow as pa

from pipeline.columns import ITEM_SCHEMA
from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.formats.shard import (
    refused_row,
    require,
    shard_failed,
    shard_paths,
    shard_units,
    unsettled,
)
from pipeline.io.idset import IdSet
from pipeline.io.own_ids import OwnIds, mark_repeated
from pipeline.io.paths import check_path, normalise, read_local
from pipeline.io.storage import filesystem, is_local
from pipeline.io.units import InputFormat, Listing, WorkUnit, audio_row, own_id_column
from pipeline.spec import InputSpec

SHARD_ENDINGS = (".parquet", ".arrow")
LIKELY_REFERENCES = ("text", "sentence", "transcription", "transcript", "normalized_text")


def list_units(
    listing: Listing, spec: InputSpec, per_unit: int, done: IdSet
) -> tuple[list[WorkUnit], int]:
    named = shard_paths(listing, lambda p: p.lower().endswith(SHARD_ENDINGS))
    named = require(named, ".parquet shards (or save_to_disk .arrow files)", spec.uri)
    # Settled shards are not opened, not even for this; the first one readable as a file
    # (not a FIFO named like a shard) is checked against the spec.
    todo = unsettled(listing, _shards(listing))
    try:
        schema = _schema(listing.fs, todo[0]) if todo else None
    except InputError:  # a corrupt shard is that shard's error row, not the run's
        schema = None
    if schema is not None:
        _check_columns(schema, spec, todo[0])
    units, skipped = shard_units(
        listing, named, "parquet", spec.limit, allow_outside=spec.allow_outside_paths
    )
    column = own_id_column(spec)
    if column is None:
        return units, skipped
    return mark_repeated(listing.fs, units, column, listing.recorded_ids), skipped


def read_rows(unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int) -> Iterator[dict]:
    if unit.error is not None:
        yield refused_row(unit)
        return
    fs, _ = filesystem(spec.uri, spec.storage)
    path = fs._strip_protocol(unit.shard_uri)
    reader = _Paths(fs, path, spec, max_bytes)
    ids = OwnIds(own_id_column(spec), unit)
    index = 0
    try:
        with fs.open(path, "rb") as f:
            batches, schema = _batches(f, path, batch)
            try:
                _check_columns(schema, spec, unit.shard_uri)
            except InputError as exc:  # checked on the first shard; this one differs
                yield shard_failed(unit, str(exc), ErrorCode.CONFIG_ERROR)
                return
            for record_batch in batches:
                for row in record_batch.to_pylist():
                    yield ids.apply(_row(unit, index, row, spec, max_bytes, reader), index)
                    index += 1
    except (pa.ArrowInvalid, OSError) as exc:
        yield shard_failed(unit, f"shard could not be read (after {index} rows): {exc}")


def hints(listing: Listing, spec: InputSpec) -> list[str]:
    """The first shard has no `input.text_column` but a column that is likely the reference."""
    shards = unsettled(listing, _shards(listing))
    try:
        names = _schema(listing.fs, shards[0]).names if shards else []
    except InputError:
        return []
    likely = [c for c in LIKELY_REFERENCES if c in names]
    if spec.text_column in names or not likely:
        return []
    return [
        f"no reference is read: the shards have no column '{spec.text_column}' but have "
        f"'{likely[0]}': set input.text_column: {likely[0]} to score against it"
    ]


FORMAT = InputFormat("parquet", ITEM_SCHEMA, list_units, read_rows, hints)


def _shards(listing: Listing) -> list[str]:
    return sorted(p for p in listing.files if p.lower().endswith(SHARD_ENDINGS))


def _schema(fs, path: str) -> pa.Schema:
    try:
        with fs.open(path, "rb") as f:
            return _batches(f, path, 1)[1]
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path} could not be read as a table: {exc}") from None


def _batches(f, path: str, batch: int):
    """(record batches, schema) of a Parquet file or an Arrow IPC stream/file."""
    if path.lower().endswith(".arrow"):
        try:
            reader = pa.ipc.open_stream(f)  # what save_to_disk writes
        except pa.ArrowInvalid:
            f.seek(0)
            file_reader = pa.ipc.open_file(f)
            batches = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
            return batches, file_reader.schema
        return reader, reader.schema
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f)
    return pf.iter_batches(batch_size=batch), pf.schema_arrow


def _check_columns(schema: pa.Schema, spec: InputSpec, where: str) -> None:
    """A misnamed audio column (or a text column the spec names explicitly) is a spec
    error, said once, not an error row per item."""
    explicit_text = "text_column" in spec.model_fields_set and spec.text_column
    if explicit_text and spec.text_column not in schema.names:
        raise InputError(
            f"{where} has no text column '{spec.text_column}' (input.text_column); columns: "
            f"{', '.join(schema.names)}"
        )
    if spec.audio_column in schema.names:
        return
    audio_like = [f.name for f in schema if _is_audio_type(f.type)]
    hint = f"; set input.audio_column: {audio_like[0]}" if audio_like else ""
    raise InputError(
        f"{where} has no audio column '{spec.audio_column}' (input.audio_column); columns: "
        f"{', '.join(schema.names)}{hint}"
    )


def _is_audio_type(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        return {t.field(i).name for i in range(t.num_fields)} >= {"bytes", "path"}
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _row(
    unit: WorkUnit, index: int, row: dict, spec: InputSpec, max_bytes: int, reader: _Paths
) -> dict:
    audio = row.pop(spec.audio_column)
    data, path = (
        (audio.get("bytes"), audio.get("path")) if isinstance(audio, dict) else (audio, None)
    )
    text = row.pop(spec.text_column, None) if spec.text_column else None
    extras = {k: v for k, v in row.items() if v is not None and not isinstance(v, bytes)}
    metadata = json.dumps({**({"path": path} if path else {}), **extras}, default=str) or None
    where = f"{unit.shard_uri} row {index}" + (f" ({path})" if path else "")
    error = None
    if data is None and path:
        data, error = reader.read(path, where)
    elif data is None:
        error = RowError(ErrorCode.MISSING_AUDIO, f"{where} has no audio bytes and no path")
    if data is not None and len(data) > max_bytes:
        error, data = _too_large(where, len(data)), None
    return audio_row(
        unit.shard_uri,
        f"row={index}",
        unit.shard,
        data,
        text=None if text is None else str(text),
        metadata=metadata if metadata != "{}" else None,
        error=error,
    )


def _too_large(where: str, size: int) -> RowError:
    return RowError(
        ErrorCode.TOO_LARGE, f"{where} is {size / 2**20:.1f} MiB, over decode.max_file_mb"
    )


class _Paths:
    """Reads the files a shard's audio structs point to, confined to the input prefix."""

    def __init__(self, fs, shard_path: str, spec: InputSpec, max_bytes: int):
        self.fs = fs
        self.folder = posixpath.dirname(shard_path)
        self.prefix = _input_prefix(fs, spec)
        self.allow_outside = spec.allow_outside_paths
        self.max_bytes = max_bytes

    def read(self, path: str, where: str) -> tuple[bytes | None, RowError | None]:
        full = path if path.startswith("/") or "://" in path else f"{self.folder}/{path}"
        full = normalise(self.fs._strip_protocol(full))
        local = is_local(self.fs)
        refused = check_path(full, self.prefix, allow_outside=self.allow_outside, local=local)
        if refused is not None:
            return None, RowError(refused.code, f"{where}: {refused.message}")
        if local:  # symlinks resolved and checked, FIFOs and devices never read
            got = read_local(
                full, self.prefix, allow_outside=self.allow_outside, max_bytes=self.max_bytes
            )
            return (
                (None, RowError(got.code, f"{where}: {got.message}"))
                if isinstance(got, RowError)
                else (got, None)
            )
        try:
            size = self.fs.size(full)
            if size is not None and size > self.max_bytes:
                return None, _too_large(where, size)
            return self.fs.cat_file(full), None
        except FileNotFoundError:
            return None, RowError(
                ErrorCode.MISSING_AUDIO, f"{where}: no bytes in the row and {full} does not exist"
            )
        except OSError as exc:
            return None, RowError(
                ErrorCode.READ_FAILED,
                f"{where}: could not read {full}: {type(exc).__name__}: {exc}",
            )


def _input_prefix(fs, spec: InputSpec) -> str:
    """The folder the input names: the uri itself, above its first glob part, or its file's
    folder."""
    _, root = filesystem(spec.uri, spec.storage)
    parts = root.split("/")
    cut = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), None)
    if cut is not None:
        return "/".join(parts[:cut]) or "/"
    if root.lower().endswith(SHARD_ENDINGS):
        return posixpath.dirname(root)
    return posixpath.normpath(root)
