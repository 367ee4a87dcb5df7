"""The `files` input format: a prefix of audio files, with an optional manifest.

Files are grouped into units of `items_per_unit`. Files whose ids an earlier run
wrote are left out here, at listing time, before anything is fetched. A file that
is too large, missing or unreadable becomes an error row, and so does a manifest
path that is refused or names a file again (`pipeline/io/paths.py`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from pipeline.columns import ITEM_SCHEMA
from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.idset import IdSet
from pipeline.io.manifest import read_manifest
from pipeline.io.paths import check_path, normalise, read_local
from pipeline.io.storage import (
    filesystem,
    full_uri,
    is_local,
    is_storage_failure,
    read_object,
)
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
    todo = list(skip_done(entries, done, lambda e: item_id(e.uri, e.member)))
    units = [
        WorkUnit(
            "files",
            shard=group[0].shard,
            size=sum(e.size or 0 for e in group),
            num_items=len(group),
            files=tuple(group),
            prefix=listing.base,
        )
        for group in (todo[i : i + per_unit] for i in range(0, len(todo), per_unit))
    ]
    return units, len(entries) - len(todo)


def read_rows(unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int) -> Iterator[dict]:
    fs, _ = filesystem(spec.uri, spec.storage)
    local = is_local(fs)
    for e in unit.files:
        if e.error is not None:  # refused while listing: never read
            data, error = None, e.error
        elif local:  # symlinks resolved and checked, FIFOs and devices never read
            got = read_local(
                fs._strip_protocol(e.uri),
                unit.prefix,
                allow_outside=spec.allow_outside_paths,
                max_bytes=max_bytes,
            )
            data, error = (None, got) if isinstance(got, RowError) else (got, None)
        else:
            data, error = _fetch(fs, e.uri, e.size, max_bytes, spec.storage.timeout_s)
        yield audio_row(
            e.uri, e.member, e.shard, data, text=e.text, metadata=e.metadata, error=error
        )


FORMAT = InputFormat("files", ITEM_SCHEMA, list_units, read_rows)


def _manifest_entries(listing: Listing, spec: InputSpec) -> list[FileEntry]:
    """One entry per manifest row, paths normalised so aliases of one file compare equal;
    a refused path, or a file named by an earlier row, is an entry with its error."""
    fs, base = listing.fs, listing.base
    local = is_local(fs)
    protocols = ("file", "local") if local else (spec.uri.split("://", 1)[0],)
    entries, seen = [], {}
    for row, m in enumerate(read_manifest(spec.manifest, spec.storage)):
        raw = m.path
        if "://" in raw and raw.split("://", 1)[0] not in protocols:
            path, error = (
                raw,
                RowError(
                    ErrorCode.INVALID_INPUT,
                    f"{raw!r} is on another storage than the input {spec.uri}",
                ),
            )
        else:
            path = fs._strip_protocol(raw) if "://" in raw else raw
            path = normalise(path if path.startswith("/") else posixpath.join(base, path))
            error = check_path(path, base, allow_outside=spec.allow_outside_paths, local=local)
        uri = raw if "://" in path else full_uri(fs, path)
        if error is None and uri in seen:
            first_row, first = seen[uri]
            error = RowError(
                ErrorCode.DUPLICATE_ID,
                f"manifest row {row + 1} ({raw!r}) names the file of row {first_row + 1} "
                f"({first!r}): {uri}",
            )
        seen.setdefault(uri, (row, raw))
        member = f"manifest-row={row}" if error else ""
        shard, size = (_shard_of(base, path), listing.files.get(path)) if not error else (".", None)
        entries.append(FileEntry(uri, shard, size, m.text, m.metadata, member, error))
    return entries


def _audio_entries(listing: Listing, spec: InputSpec) -> list[FileEntry]:
    exts = tuple(f".{e.lower()}" for e in spec.extensions)
    # Symlinks, FIFOs and directories named like audio are items too: reading them
    # follows a symlink that stays inside, and makes anything else one error row.
    paths = {**listing.files, **dict.fromkeys(listing.special)}
    return [
        FileEntry(full_uri(listing.fs, p), _shard_of(listing.base, p), size)
        for p, size in sorted(paths.items())
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
