"""A DuckDB connection over one output, with the views registered, read-only and confined.

Object storage goes through the same fsspec filesystem the pipeline uses
(`pipeline.io.storage.filesystem`), registered with DuckDB: the httpfs extension cannot
be downloaded where audiobatch is built and tested, and is not used even where it is
installed (that path is untested).
"""

from __future__ import annotations

import copy
import posixpath
import time
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
    reader = _reader_class(type(fs))(**options)
    reader.retries = getattr(fs, "retries", reader.retries)
    return reader


_READER_CLASSES: dict[type, type] = {}


def _reader_class(cls: type) -> type:
    """`cls` as a query reads through it (one instance per connection):

    - its listing cache answers only for files it holds. fsspec reports a file missing when
      its folder's cached listing (up to `LISTING_TTL_S` old) lacks it, yet a later listing
      (DuckDB's glob) may have found it: a file written meanwhile, e.g. a compaction's
      (pipeline/io/compacted.py), failed the query with FileNotFoundError. A miss asks the store;
    - `info` and `size` answer a cached file in the calling thread. DuckDB asks them (and
      `modified`, which asks `info`) ~8 times per file per query; each trip through fsspec's event loop thread cost ~2.4 ms on this
      2-core machine (8,000 calls, 19 s of DuckDB's threads' time at 1,000 files);
    - `glob` keeps each pattern's answer for `LISTING_TTL_S`: binding the views globs each
      table once per reference (24 LISTs of ~0.2 s at 1,000 files, before any query), and
      every query globs again. Compaction deletes the files it replaced an hour later at the
      earliest (`io.compact.DEFAULT_GRACE_S`), so a cached name is still there to read."""
    if cls not in _READER_CLASSES:
        _READER_CLASSES[cls] = type(f"Fresh{cls.__name__}", (_Reader, cls), {})
    return _READER_CLASSES[cls]


_DEFAULTS = {"refresh", "version_id"}


class _Reader:
    """The overrides `_reader_class` mixes in before an fsspec filesystem class."""

    def _ls_from_cache(self, path):
        try:
            return super()._ls_from_cache(path)
        except FileNotFoundError:
            return None

    def info(self, path, **kwargs):
        # s3fs's `modified` (DuckDB asks it too) passes the defaults explicitly.
        plain = not kwargs.get("refresh") and kwargs.get("version_id") is None
        entry = self._cached_file(path) if plain and set(kwargs) <= _DEFAULTS else None
        return entry if entry is not None else self._from_store("info", path, **kwargs)

    def size(self, path):
        return self.info(path).get("size")

    def glob(self, path, **kwargs):
        globs = self.__dict__.setdefault("_audiobatch_globs", {})
        key = (self._strip_protocol(path), repr(sorted(kwargs.items())))
        at, found = globs.get(key, (None, None))
        if at is None or time.monotonic() - at >= LISTING_TTL_S:
            at, found = globs[key] = (time.monotonic(), self._from_store("glob", path, **kwargs))
        return copy.copy(found)

    def _cached_file(self, path: str) -> dict | None:
        name = self._strip_protocol(path)
        listing = self._ls_from_cache(name) or ()
        return next((e for e in listing if e["name"] == name and e["type"] == "file"), None)

    def _from_store(self, method: str, *args, **kwargs):
        from fsspec.asyn import AsyncFileSystem, sync

        if isinstance(self, AsyncFileSystem):  # the sync method is fsspec's wrapper of `_method`
            return sync(self.loop, getattr(self, f"_{method}"), *args, **kwargs)
        return getattr(super(), method)(*args, **kwargs)


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
    # The pattern the table's view globs (views.table_source): the reader filesystem keeps
    # the answer, so binding the view lists nothing again.
    try:
        return fs.glob(posixpath.join(folder, "**", "*.parquet"))
    except FileNotFoundError:
        return []
