"""The `webdataset` input format: tar shards (`.tar`, `.tar.gz`, `.tgz`) whose members are
grouped by key.

A sample is the run of consecutive members sharing a key: the basename up to its
first dot, as WebDataset itself groups them (`input.webdataset.key: full`: up to
the last dot, so `spk0.utt000.flac` and `spk0.utt001.flac` are two items). A sample
holds one audio member, and optionally a text member (`.txt`, or `v2.txt` beside
`v2.flac`: the reference) and `.json` (metadata; its `input.text_column` field,
`text` by default, is the reference when there is no text member). A sample
without audio, with several audio members, or with an oversized audio member
becomes an error row.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator

from pipeline.columns import ITEM_SCHEMA
from pipeline.errors import ErrorCode, RowError
from pipeline.io.formats.shard import (
    refused_row,
    require,
    shard_failed,
    shard_paths,
    shard_units,
    unsettled,
)
from pipeline.io.idset import IdSet
from pipeline.io.storage import filesystem
from pipeline.io.units import InputFormat, Listing, WorkUnit, audio_row
from pipeline.spec import InputSpec


def list_units(
    listing: Listing, spec: InputSpec, per_unit: int, done: IdSet
) -> tuple[list[WorkUnit], int]:
    tars = shard_paths(listing, lambda p: p.lower().endswith(SHARD_ENDINGS))
    tars = require(tars, ".tar / .tar.gz shards", spec.uri)
    return shard_units(
        listing, tars, "webdataset", spec.limit, allow_outside=spec.allow_outside_paths
    )


def read_rows(unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int) -> Iterator[dict]:
    if unit.error is not None:
        yield refused_row(unit)
        return
    fs, _ = filesystem(spec.uri, spec.storage)
    audio_exts = {e.lower() for e in spec.extensions}
    try:
        with (
            fs.open(fs._strip_protocol(unit.shard_uri), "rb") as f,
            tarfile.open(fileobj=f, mode="r|*") as tar,
        ):
            seen: set[str] = set()
            for key, parts in _tar_samples(tar, max_bytes, spec.webdataset.key == "full"):
                if key in seen:  # members of one key apart from each other: never merged
                    yield _repeated_key(unit, key, len(seen))
                    continue
                seen.add(key)
                yield _sample_row(unit, key, parts, audio_exts, spec.text_column or "text")
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield shard_failed(
            unit, f"tar shard could not be read to the end: {type(exc).__name__}: {exc}"
        )


def hints(listing: Listing, spec: InputSpec) -> list[str]:
    """The first samples' JSON has a likely reference field that the spec does not read."""
    tars = unsettled(listing, sorted(p for p in listing.files if p.lower().endswith(SHARD_ENDINGS)))
    wanted = spec.text_column or "text"
    for parts in _first_samples(listing.fs, tars[0]) if tars else ():
        if any(e.rsplit(".", 1)[-1] in ("txt", wanted) for e in parts):
            continue
        try:
            meta = json.loads(parts.get("json") or b"null")
        except (ValueError, TypeError):
            continue
        if not isinstance(meta, dict) or wanted in meta:
            continue
        likely = [k for k in LIKELY_REFERENCES if k in meta]
        if likely:
            return [
                f"samples such as this shard's have no .txt member and their JSON has no "
                f"'{wanted}' field, but it has '{likely[0]}': set input.text_column: "
                f"{likely[0]} to score against it"
            ]
    return []


FORMAT = InputFormat("webdataset", ITEM_SCHEMA, list_units, read_rows, hints)

SHARD_ENDINGS = (".tar", ".tar.gz", ".tgz")
LIKELY_REFERENCES = ("text", "sentence", "transcription", "transcript", "normalized_text")


def _first_samples(fs, path: str, n: int = 20) -> list[dict]:
    try:
        with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            samples = _tar_samples(tar, 2**20, False)
            return [parts for _, (_, parts) in zip(range(n), samples, strict=False)]
    except (tarfile.TarError, OSError, EOFError):  # reported as a shard error when read
        return []


def _tar_samples(
    tar: tarfile.TarFile, max_bytes: int, full_key: bool
) -> Iterator[tuple[str, dict[str, bytes | int]]]:
    """Group consecutive members by key: the basename up to its first dot (WebDataset's
    rule), or up to its last dot with `full_key`."""
    key, parts = None, {}
    for member in tar:
        if not member.isfile():
            continue
        dirname, base = posixpath.split(member.name)
        stem, _, ext = base.rpartition(".") if full_key and "." in base else base.partition(".")
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


def _sample_row(
    unit: WorkUnit, key: str, parts: dict, audio_exts: set[str], text_field: str
) -> dict:
    audio = [e for e in parts if e in audio_exts or e.rsplit(".", 1)[-1] in audio_exts]
    text, metadata = _tar_text(parts, audio[0] if len(audio) == 1 else "", text_field)
    data, error = None, None
    if not audio:
        error = RowError(
            ErrorCode.MISSING_AUDIO,
            f"{unit.shard_uri}: sample '{key}' has no audio member (has: {', '.join(sorted(parts))})",
        )
    elif len(audio) > 1:
        error = RowError(
            ErrorCode.AMBIGUOUS_SAMPLE,
            f"{unit.shard_uri}: sample '{key}' has {len(audio)} audio members "
            f"({', '.join(f'{key}.{e}' for e in sorted(audio))}): WebDataset groups members by "
            "the name up to the first dot; if each file is an utterance, set "
            "input.webdataset.key: full",
        )
    elif isinstance(parts[audio[0]], int):
        error = RowError(
            ErrorCode.TOO_LARGE,
            f"{unit.shard_uri}: '{key}.{audio[0]}' is {parts[audio[0]] / 2**20:.1f} MiB, "
            "over decode.max_file_mb",
        )
    else:
        data = parts[audio[0]]
    return audio_row(
        unit.shard_uri, key, unit.shard, data, text=text, metadata=metadata, error=error
    )


def _repeated_key(unit: WorkUnit, key: str, position: int) -> dict:
    """A key whose members come again after another sample's: an error row of its own
    (member `key#N`), so it neither shadows nor silently joins the first."""
    error = RowError(
        ErrorCode.DUPLICATE_ID,
        f"{unit.shard_uri}: sample '{key}' appears again after other samples (a tar's members "
        "of one sample must be consecutive)",
    )
    return audio_row(unit.shard_uri, f"{key}#{position}", unit.shard, None, error=error)


def _tar_text(parts: dict, audio_ext: str, field: str) -> tuple[str | None, str | None]:
    """The reference (a text member, else the JSON's `field`) and the JSON's other fields."""
    text = _member_text(parts, audio_ext, field)
    metadata = None
    meta_raw = next((v for e, v in parts.items() if e.rsplit(".", 1)[-1] == "json"), None)
    if isinstance(meta_raw, bytes):
        try:
            meta = json.loads(meta_raw)
        except ValueError:
            meta = None
        if isinstance(meta, dict):
            if text is None and isinstance(meta.get(field), str):
                text = meta.pop(field)
            metadata = json.dumps(meta) if meta else None
    return text, metadata


def _member_text(parts: dict, audio_ext: str, field: str) -> str | None:
    """`txt` (or `<field>`) beside the audio: `v2.txt` for `v2.flac`, else the only one."""
    prefix = audio_ext.rsplit(".", 1)[0] + "." if "." in audio_ext else ""
    names = (f"{prefix}txt", "txt", f"{prefix}{field}", field)
    found = next((parts[n] for n in names if isinstance(parts.get(n), bytes)), None)
    if found is None:
        texts = [v for e, v in parts.items() if e.rsplit(".", 1)[-1] == "txt"]
        found = texts[0] if len(texts) == 1 and isinstance(texts[0], bytes) else None
    return None if found is None else found.decode("utf-8", errors="replace").strip()
