"""What the one-file-per-unit formats (webdataset, parquet, texts) share.

Each listed shard file is one work unit; `input.limit` keeps whole shards; a shard
that cannot be read to the end becomes one error row (member "") after the rows
read before the failure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.storage import full_uri
from pipeline.io.units import Listing, WorkUnit, audio_row


def shard_units(
    listing: Listing, paths: Iterable[str], fmt: str, limit: int | None
) -> list[WorkUnit]:
    """One unit per shard path (rows counted from Parquet footers), cut to `limit` items."""
    units = [_unit(listing, p, fmt) for p in paths]
    return _limit_shards(units, limit)


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
    return WorkUnit(fmt, shard_uri=full_uri(fs, path), shard=rel, size=size, num_items=rows)


def _parquet_rows(fs, path: str) -> int | None:
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows
    except Exception:  # an unreadable shard is reported when it is read, as an error row
        return None


def _limit_shards(units: list[WorkUnit], limit: int | None) -> list[WorkUnit]:
    """`limit` for shard formats keeps whole shards until at least `limit` items are covered."""
    if not limit:
        return units
    kept, covered = [], 0
    for u in units:
        if covered >= limit:
            break
        kept.append(u)
        covered += u.num_items or 1
    return kept
