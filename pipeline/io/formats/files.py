"""The `files` input format: a prefix of audio files, with an optional manifest.

Files are grouped into units of `items_per_unit`. Files whose ids an earlier run
wrote are left out here, at listing time, before anything is fetched. A file that
is too large, missing or unreadable becomes an error row.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from pipeline.columns import ITEM_SCHEMA
from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.idset import IdSet
from pipeline.io.manifest import read_manifest
from pipeline.io.storage import filesystem, full_uri, is_storage_failure, read_object
from pipeline.io.units import (
    FileEntry,
    InputFormat,
    Listing,
    WorkUnit,
    audio_row,
    item_id,
    skip_done,
)
from pipeline.spec import InputSpec


def list_units(
    listing: Listing, spec: InputSpec, per_unit: int, done: IdSet
) -> tuple[list[WorkUnit], int]:
    """Units of at most `per_unit` files not yet done, and how many were left out as done."""
    entries = _manifest_entries(listing, spec) if spec.manifest else _audio_entries(listing, spec)
    if spec.limit:
        entries = entries[: spec.limit]
    if not entries:
        raise InputError(f"no audio files ({', '.join(spec.extensions)}) under {spec.uri}")
    todo = list(skip_done(entries, done, lambda e: item_id(e.uri, "")))
    units = [
        WorkUnit(
            "files",
            shard=group[0].shard,
            size=sum(e.size or 0 for e in group),
            num_items=len(group),
            files=tuple(group),
        )
        for group in (todo[i : i + per_unit] for i in range(0, len(todo), per_unit))
    ]
    return units, len(entries) - len(todo)


def read_rows(unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int) -> Iterator[dict]:
    fs, _ = filesystem(spec.uri, spec.storage)
    for e in unit.files:
        data, error = _fetch(fs, e.uri, e.size, max_bytes, spec.storage.timeout_s)
        yield audio_row(e.uri, "", e.shard, data, text=e.text, metadata=e.metadata, error=error)


FORMAT = InputFormat("files", ITEM_SCHEMA, list_units, read_rows)


def _manifest_entries(listing: Listing, spec: InputSpec) -> list[FileEntry]:
    fs, base = listing.fs, listing.base
    entries = []
    for m in read_manifest(spec.manifest, spec.storage):
        path = m.path if m.path.startswith("/") or "://" in m.path else posixpath.join(base, m.path)
        path = fs._strip_protocol(path) if "://" in path else path
        entries.append(
            FileEntry(
                full_uri(fs, path),
                _shard_of(base, path),
                listing.files.get(path),
                m.text,
                m.metadata,
            )
        )
    return entries


def _audio_entries(listing: Listing, spec: InputSpec) -> list[FileEntry]:
    exts = tuple(f".{e.lower()}" for e in spec.extensions)
    return [
        FileEntry(full_uri(listing.fs, p), _shard_of(listing.base, p), size)
        for p, size in sorted(listing.files.items())
        if p.lower().endswith(exts)
    ]


def _fetch(
    fs, uri: str, size: int | None, max_bytes: int, timeout_s: float
) -> tuple[bytes | None, RowError | None]:
    path = fs._strip_protocol(uri)
    if size is not None and size > max_bytes:
        return None, RowError(
            ErrorCode.TOO_LARGE, f"{uri} is {size / 2**20:.1f} MiB, over decode.max_file_mb"
        )
    try:
        return read_object(fs, path, timeout_s), None
    except FileNotFoundError:
        return None, RowError(
            ErrorCode.MISSING_AUDIO, f"{uri} is listed in the manifest but does not exist"
        )
    except Exception as exc:
        if not is_storage_failure(exc):  # (timeouts, refused connections, botocore errors)
            raise
        return None, RowError(
            ErrorCode.READ_FAILED, f"could not read {uri}: {type(exc).__name__}: {exc}"
        )


def _shard_of(base: str, path: str) -> str:
    rel = posixpath.dirname(posixpath.relpath(path, base))
    return rel or "."
