"""The `webdataset` input format: tar shards whose members are grouped by key.

A sample is the run of consecutive members sharing a key (the basename up to its
first dot): one audio member, and optionally `.txt` (the reference) and `.json`
(metadata; its `text` is the reference when there is no `.txt`). A sample without
audio, or with an oversized audio member, becomes an error row.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator

from pipeline.columns import ITEM_SCHEMA
from pipeline.errors import ErrorCode, RowError
from pipeline.io.formats.shard import require, shard_failed, shard_units
from pipeline.io.idset import IdSet
from pipeline.io.storage import filesystem
from pipeline.io.units import InputFormat, Listing, WorkUnit, audio_row
from pipeline.spec import InputSpec


def list_units(
    listing: Listing, spec: InputSpec, per_unit: int, done: IdSet
) -> tuple[list[WorkUnit], int]:
    tars = sorted(p for p in listing.files if p.lower().endswith(".tar"))
    return shard_units(listing, require(tars, ".tar shards", spec.uri), "webdataset", spec.limit), 0


def read_rows(unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int) -> Iterator[dict]:
    fs, _ = filesystem(spec.uri, spec.storage)
    audio_exts = {e.lower() for e in spec.extensions}
    try:
        with (
            fs.open(fs._strip_protocol(unit.shard_uri), "rb") as f,
            tarfile.open(fileobj=f, mode="r|*") as tar,
        ):
            for key, parts in _tar_samples(tar, max_bytes):
                yield _sample_row(unit, key, parts, audio_exts)
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield shard_failed(
            unit, f"tar shard could not be read to the end: {type(exc).__name__}: {exc}"
        )


FORMAT = InputFormat("webdataset", ITEM_SCHEMA, list_units, read_rows)


def _tar_samples(
    tar: tarfile.TarFile, max_bytes: int
) -> Iterator[tuple[str, dict[str, bytes | int]]]:
    """Group consecutive members by WebDataset key (the basename up to its first dot)."""
    key, parts = None, {}
    for member in tar:
        if not member.isfile():
            continue
        dirname, base = posixpath.split(member.name)
        stem, _, ext = base.partition(".")
        k = posixpath.join(dirname, stem)
        if k != key and key is not None:
            yield key, parts
            parts = {}
        key = k
        # Oversized members are not read into memory: their size stands in for the bytes.
        f = tar.extractfile(member)
        parts[ext.lower()] = member.size if member.size > max_bytes else (f.read() if f else b"")
    if key is not None:
        yield key, parts


def _sample_row(unit: WorkUnit, key: str, parts: dict, audio_exts: set[str]) -> dict:
    text, metadata = _tar_text(parts)
    audio_ext = next(
        (e for e in parts if e in audio_exts or e.rsplit(".", 1)[-1] in audio_exts), None
    )
    data, error = None, None
    if audio_ext is None:
        error = RowError(
            ErrorCode.MISSING_AUDIO,
            f"{unit.shard_uri}: sample '{key}' has no audio member (has: {', '.join(sorted(parts))})",
        )
    elif isinstance(parts[audio_ext], int):
        error = RowError(
            ErrorCode.TOO_LARGE,
            f"{unit.shard_uri}: '{key}.{audio_ext}' is {parts[audio_ext] / 2**20:.1f} MiB, "
            "over decode.max_file_mb",
        )
    else:
        data = parts[audio_ext]
    return audio_row(
        unit.shard_uri, key, unit.shard, data, text=text, metadata=metadata, error=error
    )


def _tar_text(parts: dict) -> tuple[str | None, str | None]:
    text = parts.get("txt")
    text = text.decode("utf-8", errors="replace").strip() if isinstance(text, bytes) else None
    meta_raw = parts.get("json")
    metadata = None
    if isinstance(meta_raw, bytes):
        try:
            meta = json.loads(meta_raw)
        except ValueError:
            meta = None
        if isinstance(meta, dict):
            if text is None and isinstance(meta.get("text"), str):
                text = meta["text"]
            metadata = json.dumps({k: v for k, v in meta.items() if k != "text"}) or None
    return text, metadata
