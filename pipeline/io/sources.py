"""What each source looked like when processed: changed sources, and settled shards.

A source is a file (files format) or a shard (webdataset, parquet, texts). The listing
gives each one's size and version (etag on object storage, mtime in ns on local disk);
the completion records keep what they were when each item was read
(`completion.source_state`).

- Changed: a listed source whose size or version differs from its latest records, and
  that no later unit record (below) has seen as it is now. Listed in the run record and
  the report; `incremental.reprocess_changed: true` makes the run do its items again.
- Settled shards: after a successful run, the runner writes one unit record per shard it
  read (`_units/<run_id>.parquet`: the shard's URI, size, version, item count and the
  tasks of the run). The run's commit is done by then, so every item of those shards is
  settled for those tasks. At planning a shard is skipped unread (not even its Parquet
  footer or tar header is fetched) when a unit record matches its size and version,
  covers every task of the spec, and none of its items is due again (a retried error,
  a reprocessed source). Unit records are facts about the source and the tasks: a
  record left by a run that crashed just after its commit is as true as any.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.io.completion import Completion, Records, source_items
from pipeline.io.storage import full_uri, full_uris
from pipeline.io.units import Listing, WorkUnit

UNITS_DIR = "_units"
UNIT_RECORD = pa.schema(
    [
        pa.field("shard_uri", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("version", pa.string()),
        pa.field("items", pa.int64()),  # null: not known at planning (tar shards)
        pa.field("tasks", pa.list_(pa.string()), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)


def listed_sources(listing: Listing) -> pa.Table:
    """Every listed file as (source_uri, size, version)."""
    paths = list(listing.files)
    return pa.table(
        {
            "source_uri": pa.array(full_uris(listing.fs, paths), pa.string()),
            "size": pa.array([listing.files[p] for p in paths], pa.int64()),
            "version": pa.array([listing.versions.get(p) for p in paths], pa.string()),
        }
    )


def changed_sources(
    listed: pa.Table, state: pa.Table | None, units: pa.Table | None = None
) -> tuple[str, ...]:
    """Listed sources whose size or version differs from their latest records (sorted).

    A source whose records predate the columns (nulls) is not called changed; one that a
    unit record has seen at its present size and version is not either."""
    import pyarrow.compute as pc

    if state is None or listed.num_rows == 0:
        return ()
    # Positions of the listed sources in the state (a hash of the state's URIs): leaner
    # than a join at 1M sources.
    at = pc.index_in(listed.column("source_uri"), value_set=state.column("source_uri"))
    known = pc.is_valid(at)
    listed, at = listed.filter(known), at.filter(known)
    if listed.num_rows == 0:
        return ()
    size, version = state.column("source_size").take(at), state.column("source_version").take(at)
    version_differs = pc.and_(pc.is_valid(version), pc.not_equal(listed.column("version"), version))
    size_differs = pc.not_equal(listed.column("size"), size)
    differs = pc.or_(pc.fill_null(version_differs, False), pc.fill_null(size_differs, False))
    # A recorded version with no listed one (a storage without etags) proves nothing.
    found = listed.filter(pc.and_(differs, pc.is_valid(version)))
    if units is not None and units.num_rows and found.num_rows:
        seen = units.select(["shard_uri", "size", "version"]).rename_columns(
            ["source_uri", "size", "version"]
        )
        found = found.join(seen, keys=["source_uri", "size", "version"], join_type="left anti")
    return tuple(sorted(found.column("source_uri").to_pylist()))


def read_unit_records(fs: pafs.FileSystem, root: str) -> pa.Table | None:
    """Every unit record of the output (None when there are none)."""
    import pyarrow.dataset as ds

    from pipeline.io.tables import parquet_files

    files = parquet_files(fs, posixpath.join(root, UNITS_DIR))
    if not files:
        return None
    return ds.dataset(files, schema=UNIT_RECORD, filesystem=fs, format="parquet").to_table()


def write_unit_records(
    fs: pafs.FileSystem, root: str, run_id: str, units: Sequence[WorkUnit], tasks: Sequence[str]
) -> int:
    """After a successful run: one record per shard it read; how many were written."""
    from pipeline.io.tables import write_parquet

    shards = [u for u in units if not u.files and u.shard_uri]
    if not shards:
        return 0
    table = pa.table(
        {
            "shard_uri": [u.shard_uri for u in shards],
            "size": [u.size for u in shards],
            "version": [u.version for u in shards],
            "items": [u.num_items for u in shards],
            "tasks": [list(tasks)] * len(shards),
            "run_id": [run_id] * len(shards),
        },
        schema=UNIT_RECORD,
    )
    write_parquet(fs, posixpath.join(root, UNITS_DIR, f"{run_id}.parquet"), table)
    return len(shards)


def settled_shards(
    listing: Listing,
    units: pa.Table | None,
    records: Records,
    done: Completion,
    tasks: Sequence[str],
) -> dict[str, int]:
    """Listed shard paths that need no reading: path -> the items recorded for it."""
    if units is None or units.num_rows == 0:
        return {}
    covered: dict[tuple[str, int | None, str], set[str]] = {}
    for r in units.to_pylist():
        if r["version"] is not None:
            covered.setdefault((r["shard_uri"], r["size"], r["version"]), set()).update(r["tasks"])
    counts = source_items(records, {uri for uri, _, _ in covered})
    wanted = set(tasks)
    settled = {}
    for path, size in listing.files.items():
        version = listing.versions.get(path)
        if version is None:
            continue
        uri = full_uri(listing.fs, path)
        if uri in done.pending_sources or not wanted <= covered.get((uri, size, version), set()):
            continue
        settled[path] = counts.get(uri, 0)
    return settled
