"""What the one-file-per-unit formats (webdataset, parquet, texts) share.

Each listed shard file is one work unit; `input.limit` keeps whole shards; a shard
that cannot be read to the end becomes one error row (member "") after the rows
read before the failure. A shard in `listing.settled` (every item settled by an
earlier run, unchanged since) is left out without being opened.
A local path named like a shard that is no file to read (a
symlink leading outside the prefix, a loop, a broken symlink, a FIFO, a directory)
is a unit that reads as one error row naming the path, and is never opened.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable

from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.paths import local_file
from pipeline.io.storage import full_uri
from pipeline.io.units import Listing, WorkUnit, audio_row


def shard_paths(listing: Listing, named: Callable[[str], bool]) -> list[str]:
    """The listed paths `named` like a shard: its files, and the local paths that are not
    plain files (which become error rows), sorted."""
    return sorted(p for p in (*listing.files, *listing.special) if named(p))


def shard_units(
    listing: Listing,
    paths: Iterable[str],
    fmt: str,
    limit: int | None,
    *,
    allow_outside: bool = False,
) -> tuple[list[WorkUnit], int]:
    """One unit per shard path not settled (rows counted from Parquet footers), cut to
    `limit` items (whole shards); and how many items the settled shards left out hold.

    A path that is not a listed file is checked without being opened: a symlink leading
    outside the prefix is read only with `allow_outside` (input.allow_outside_paths)."""
    units, covered, skipped = [], 0, 0
    for path in paths:
        if limit and covered >= limit:
            break
        if path in listing.settled:
            skipped += listing.settled[path]
            covered += listing.settled[path] or 1
            continue
        units.append(_unit(listing, path, fmt, allow_outside))
        covered += units[-1].num_items or 1
    return units, skipped


def unsettled(listing: Listing, paths: list[str]) -> list[str]:
    """The shard paths an earlier run has not settled (the ones this run reads)."""
    return [p for p in paths if p not in listing.settled]


def refused_row(unit: WorkUnit) -> dict:
    """The one error row of a unit refused at listing (`unit.error`)."""
    return audio_row(unit.shard_uri, "", unit.shard, None, error=unit.error)


def require(paths: list[str], what: str, uri: str) -> list[str]:
    """`paths`, or an InputError saying that no `what` was found under `uri`."""
    if not paths:
        raise InputError(f"no {what} under {uri}")
    return paths


def shard_failed(unit: WorkUnit, why: str, code: ErrorCode = ErrorCode.SHARD_CORRUPT) -> dict:
    """One error row for the whole shard (member ""); rows read before the failure stay."""
    error = RowError(code, f"{unit.shard_uri}: {why}")
    return audio_row(unit.shard_uri, "", unit.shard, None, error=error)


def _unit(listing: Listing, path: str, fmt: str, allow_outside: bool) -> WorkUnit:
    fs = listing.fs
    uri, rel = full_uri(fs, path), posixpath.relpath(path, listing.base)
    if path in listing.files:
        size = listing.files[path] or 0
    else:
        size = local_file(path, listing.base, allow_outside=allow_outside)
        if isinstance(size, RowError):
            return WorkUnit(fmt, shard_uri=uri, shard=rel, num_items=1, error=size)
    is_parquet = fmt == "parquet" or (fmt == "texts" and path.lower().endswith(".parquet"))
    rows = _parquet_rows(fs, path) if is_parquet else None
    version = listing.versions.get(path)
    return WorkUnit(fmt, shard_uri=uri, shard=rel, size=size, num_items=rows, version=version)


def _parquet_rows(fs, path: str) -> int | None:
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows
    except Exception:  # an unreadable shard is reported when it is read, as an error row
        return None
