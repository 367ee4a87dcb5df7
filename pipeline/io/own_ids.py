"""The user's own item ids in Parquet shards (`input.id_column`): unique across the input.

Each shard is read by its own task, so no reader can tell that another shard holds an id
too. The planner therefore reads the id column of every shard this run reads (one column:
a Parquet footer and column chunk; a `save_to_disk` `.arrow` stream is read through,
memory-mapped when local) and marks each later occurrence of an id, in shard and row
order, on its unit (`WorkUnit.repeated_ids`). Reading makes such a row a `duplicate_id`
error row under its derived id (shard URI and row), naming both places; the first
occurrence keeps the id. The order is the listing's (sorted paths), so a re-run picks
the same first occurrence and the same ids.

Shards an earlier run settled are not opened (io/sources.py); the ids earlier runs took
come from the completion records instead (`recorded_ids`, set on the listing by the
nightly planner): an id recorded for a source that is still listed belongs to it, and a
row of another shard holding it is a duplicate_id row too (it would otherwise be skipped
as done). An id recorded for a source no longer listed (a shard moved or renamed) is free:
the moved shard's rows are the same items, still done.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace

import pyarrow as pa

from pipeline.errors import ErrorCode, RowError
from pipeline.io.completion import Records
from pipeline.io.storage import full_uris
from pipeline.io.units import Listing, WorkUnit, error_fields


def mark_repeated(
    fs, units: list[WorkUnit], column: str, recorded: pa.Table | None = None
) -> list[WorkUnit]:
    """`units` with `repeated_ids` set: row -> where its id first appeared (`URI row=N`).

    `recorded` (`recorded_ids`) gives the ids earlier runs took for sources still listed:
    such an id belongs to that source, and a row of any other shard holding it repeats
    it, even when that source is settled and not read now."""
    per_unit = [list(_ids(fs, u, column)) for u in units]
    owner = _owners(recorded, {v for ids in per_unit for _, v in ids})
    first: dict[str, str] = {}
    out = []
    for unit, ids in zip(units, per_unit, strict=True):
        repeated = []
        for index, value in ids:
            taken = owner.get(value, unit.shard_uri)
            if value in first:
                repeated.append((index, first[value]))
            elif taken != unit.shard_uri:
                repeated.append((index, f"{taken} (processed by an earlier run)"))
            else:
                first[value] = f"{unit.shard_uri} row={index}"
        out.append(replace(unit, repeated_ids=tuple(repeated)) if repeated else unit)
    return out


def recorded_ids(records: Records, listing: Listing) -> pa.Table | None:
    """(item_id, source_uri) of the completion records whose source is still listed: a
    shard moved away (no longer listed) gives its ids up, so moving a shard keeps them."""
    import pyarrow.compute as pc

    table = records.table
    if table is None or table.num_rows == 0:
        return None
    listed = pa.array(full_uris(listing.fs, list(listing.files)), pa.string())
    table = table.select(["item_id", "source_uri"])
    return table.filter(pc.is_in(table.column("source_uri"), value_set=listed))


def _owners(recorded: pa.Table | None, ids: set[str]) -> dict[str, str]:
    """id -> the listed source an earlier run recorded it for (the first by URI if two)."""
    import pyarrow.compute as pc

    if recorded is None or not ids:
        return {}
    hits = recorded.filter(pc.is_in(recorded.column("item_id"), value_set=pa.array(sorted(ids))))
    owner: dict[str, str] = {}
    for item, source in zip(
        hits.column("item_id").to_pylist(), hits.column("source_uri").to_pylist(), strict=True
    ):
        owner[item] = min(owner.get(item, source), source)
    return owner


def _ids(fs, unit: WorkUnit, column: str) -> Iterator[tuple[int, str]]:
    """(row, id as text) of every row of the shard with an id; nothing for a shard that
    cannot be read here (its read reports that) or that lacks the column."""
    if unit.error is not None:
        return
    try:
        values = _column(fs, fs._strip_protocol(unit.shard_uri), column)
    except (pa.ArrowInvalid, OSError, KeyError):
        return
    for index, value in enumerate(values):
        if value is not None:
            yield index, _text(value)


def _column(fs, path: str, column: str) -> Iterable:
    import pyarrow.parquet as pq

    if not path.lower().endswith(".arrow"):
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            if column not in pf.schema_arrow.names:
                return []
            return pf.read(columns=[column]).column(column).to_pylist()
    from pipeline.io.storage import is_local

    source = pa.memory_map(path) if is_local(fs) else fs.open(path, "rb")
    with source:
        schema, batches = _ipc_batches(source)
        if column not in schema.names:
            return []
        return [v for batch in batches for v in batch.column(column).to_pylist()]


def _ipc_batches(source) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A stream (what save_to_disk writes) or, failing that, an IPC file, as batches."""
    try:
        reader = pa.ipc.open_stream(source)
        return reader.schema, iter(reader)
    except pa.ArrowInvalid:
        source.seek(0)
        f = pa.ipc.open_file(source)
        return f.schema, (f.get_batch(i) for i in range(f.num_record_batches))


def _text(value) -> str:
    """An id as the reader sees it: the metadata's JSON value, as text."""
    return str(json.loads(json.dumps(value, default=str)))


class OwnIds:
    """At read time: a row's id is its value in `column` (kept in metadata too); a row the
    planner marked, or a value seen before in this shard, makes a duplicate_id error row
    under its derived id."""

    def __init__(self, column: str | None, unit: WorkUnit):
        self.column = column
        self.repeated = dict(unit.repeated_ids)
        self.seen: set[str] = set()

    def apply(self, row: dict, index: int) -> dict:
        value = (
            json.loads(row["metadata"]).get(self.column)
            if self.column and row["metadata"]
            else None
        )
        if value is None:
            return row
        first = self.repeated.get(index)
        if first is None and str(value) not in self.seen:
            self.seen.add(str(value))
            return {**row, "item_id": str(value)}
        also = f"is also the id of {first}" if first else "was seen earlier in this shard"
        error = RowError(
            ErrorCode.DUPLICATE_ID,
            f"{row['source_uri']} {row['member']}: id {value!r} (input.id_column: "
            f"{self.column}) {also}; ids must be unique across the input",
        )
        return {**row, "audio_bytes": None, "input_bytes": 0, **error_fields(error)}
