"""What the one-file-per-unit formats (webdataset, parquet, texts) share.

Each listed shard file is one work unit; `input.limit` keeps whole shards; a shard
that cannot be read to the end becomes one error row (member "") after the rows
read before the failure. A shard in `listing.settled` (every item settled by an
earlier run, unchanged since) is left out without being opened.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.storage import full_uri
from pipeline.io.units import Listing, WorkUnit, audio_row


def shard_units(
    listing: Listing, paths: Iterable[str], fmt: str, limit: int | None
) -> tuple[list[WorkUnit], int]:
    """One unit per shard path not settled (rows counted from Parquet footers), cut to
    `limit` items (whole shards); and how many items the settled shards left out hold."""
    units, covered, skipped = [], 0, 0
    for path in paths:
        if limit and covered >= limit:
            break
        if path in listing.settled:
            skipped += listing.settled[path]
            covered += listing.settled[path] or 1
            continue
        units.append(_unit(listing, path, fmt))
        covered += units[-1].num_items or 1
    return units, skipped


def unsettled(listing: Listing, paths: list[str]) -> list[str]:
    """The shard paths an earlier run has not settled (the ones this run reads)."""
    return [p for p in paths if p not in listing.settled]


def require(paths: list[str], what: str, uri: str) -> list[str]:
    """`paths`, or an InputError saying that no `what` was found under `uri`."""
    if not paths:
        raise InputError(f"no {what} under {uri}")
    return paths


def shard_failed(unit: WorkUnit, why: str, code: ErrorCode = ErrorCode.SHARD_CORRUPT) -> dict:
    """One error row for the whole shard (member ""); rows read before the failure stay."""
    error = RowError(code, f"{unit.shard_uri}: {why}")
    return audio_row(unit.shard_uri, "", unit.shard, None, error=error)


def _unit(listing: Listing, path: str, fmt: str) -> WorkUnit:
    fs = listing.fs
    is_parquet = fmt == "parquet" or (fmt == "texts" and path.lower().endswith(".parquet"))
    rows = _parquet_rows(fs, path) if is_parquet else None
    rel = posixpath.relpath(path, listing.base)
    size = listing.files[path] or 0
    version = listing.versions.get(path)
    return WorkUnit(
        fmt, shard_uri=full_uri(fs, path), shard=rel, size=size, num_items=rows, version=version
    )


def _parquet_rows(fs, path: str) -> int | None:
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows
    except Exception:  # an unreadable shard is reported when it is read, as an error row
        return None
