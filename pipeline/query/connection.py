"""A DuckDB connection over one output, with the views registered, read-only and confined.

Object storage goes through the same fsspec filesystem the pipeline uses
(`pipeline.io.storage.filesystem`), registered with DuckDB: the httpfs extension cannot
be downloaded where audiobatch is built and tested, and is not used even where it is
installed (that path is untested).
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from pipeline.io.compacted import published
from pipeline.io.storage import filesystem, is_remote
from pipeline.query.confine import QueryError, confine
from pipeline.query.views import register
from pipeline.schemas import TABLES
from pipeline.spec import StorageOptions

if TYPE_CHECKING:
    import duckdb


def connect(output: str, storage: StorageOptions | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to the output at `output` (a folder or an object-storage URI).

    Every view of `pipeline.query.views` is registered, so `con.sql("FROM corpus_wer").df()`,
    `.pl()` and `.arrow()` work; the connection can read nothing outside the output and
    cannot change its own settings. Credentials come from the usual chain (AWS_* variables,
    ~/.aws, instance roles); `storage` sets the endpoint and region."""
    import duckdb

    fs, path = filesystem(output, storage)
    if is_remote(output):
        fs = reader_filesystem(fs)
    # Manifests before any listing of a table (pipeline/io/compacted.py says why).
    compacted = {t: published(fs, path, t) for t in TABLES}
    present = tables_present(fs, path, output)
    con = duckdb.connect(":memory:")
    if is_remote(output):
        con.register_filesystem(fs)
        root = fs.unstrip_protocol(path)
    else:
        root = posixpath.abspath(path)
    register(con, root, present, compacted, older_tables(fs, path, present))
    confine(con, root)
    return con


# DuckDB asks a registered filesystem for each file's details and size several times per
# query: with s3fs's listing cache off (as the writers need it: other processes write) that
# is ~7 requests a file, 11 s for a query over 20 files on the emulator; answered from the
# glob's own listing, 0.4 s. New files are then seen within this many seconds. Each
# connection gets its own filesystem instance (`skip_instance_cache`), so its listings
# are its own: fsspec would otherwise hand every connection of the process the same
# instance, and a report built right after a run would list files that run has since
# replaced (FileNotFoundError) and miss the ones it wrote.
LISTING_TTL_S = 30


def reader_filesystem(fs):
    if "use_listings_cache" not in fs.storage_options:
        return fs
    options = {**fs.storage_options, "use_listings_cache": True}
    options |= {"listings_expiry_time": LISTING_TTL_S, "skip_instance_cache": True}
    reader = _trusting_only_hits(type(fs))(**options)
    reader.retries = getattr(fs, "retries", reader.retries)
    return reader


_READER_CLASSES: dict[type, type] = {}


def _trusting_only_hits(cls: type) -> type:
    """`cls` whose listing cache answers only for files it holds. fsspec reports a file
    missing when its folder's cached listing (up to `LISTING_TTL_S` old) lacks it, yet a later
    listing (DuckDB's glob) may have found it: a file written meanwhile, e.g. a compaction's
    (pipeline/io/compacted.py), failed the query with FileNotFoundError. A miss asks the store."""
    if cls not in _READER_CLASSES:

        class Reader(cls):
            def _ls_from_cache(self, path):
                try:
                    return super()._ls_from_cache(path)
                except FileNotFoundError:
                    return None

        Reader.__name__ = Reader.__qualname__ = f"Fresh{cls.__name__}"
        _READER_CLASSES[cls] = Reader
    return _READER_CLASSES[cls]


def tables_present(fs, path: str, output: str) -> dict[str, set[str]]:
    """The tables under `path` that hold at least one Parquet file, each with the partition
    values (`task=<v>` folders) its files lie under: one listing per table. An error if no
    table has a file."""
    if not fs.exists(path):
        raise QueryError(f"{output}: no such output folder")
    present = {}
    for table in TABLES:
        files = _parquet_files(fs, posixpath.join(path, table))
        if files:
            present[table] = {_partition(posixpath.join(path, table), f) for f in files}
    if not present:
        names = ", ".join(f"{t}/" for t in TABLES)
        raise QueryError(
            f"{output} holds no audiobatch tables (none of {names} has a Parquet file): "
            "is it a job's output.uri?"
        )
    return present


def older_tables(fs, path: str, present: dict[str, set[str]]) -> list[str]:
    """The result tables with a task whose record (`_tasks/`, io/task_identity.py) holds no
    model revision: its files may predate the `model_revision` column. A task recorded
    with one was written by a version that writes the column in every file."""
    from pipeline.io.task_identity import recorded_revisions

    revisions = recorded_revisions(fs, path)
    return [
        table
        for table, partitions in present.items()
        if "model_revision" in TABLES[table][0].names
        and any(revisions.get(p.removeprefix("task=")) is None for p in partitions if p)
    ]


def _partition(folder: str, file: str) -> str:
    """The `name=value` folder directly under the table's `folder` holding `file`, or ""."""
    first = file.strip("/").removeprefix(folder.strip("/")).strip("/").split("/", 1)[0]
    return first if "=" in first else ""


def _parquet_files(fs, folder: str) -> list[str]:
    try:
        return [p for p in fs.find(folder) if p.endswith(".parquet")]
    except FileNotFoundError:
        return []
