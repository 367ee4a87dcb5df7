"""Listing the input into work units, on the driver, before any audio is fetched.

A work unit is what one Ray read task reads (`shards.read_unit`): a group of audio
files, one WebDataset tar, or one Parquet file. Item ids are fixed here: a hash of
the shard URI and the member key, so re-runs and nightly runs find the same ids.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field

from pipeline.errors import InputError
from pipeline.io.idset import IdSet
from pipeline.io.manifest import read_manifest
from pipeline.io.storage import filesystem, full_uri
from pipeline.spec import InputSpec


def item_id(source_uri: str, member: str) -> str:
    """Stable id of an item: a hash of its shard URI and its key inside the shard."""
    return hashlib.sha256(f"{source_uri}\n{member}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class FileEntry:
    uri: str  # absolute URI of the audio file
    shard: str  # folder relative to the input root, for per-shard reports
    size: int | None
    text: str | None = None
    metadata: str | None = None


@dataclass(frozen=True)
class WorkUnit:
    """What one read task reads. `files` for the files format, else one shard URI."""

    format: str
    shard_uri: str = ""
    shard: str = ""
    size: int = 0
    num_items: int | None = None
    files: tuple[FileEntry, ...] = field(default=())


@dataclass(frozen=True)
class InputPlan:
    format: str
    units: list[WorkUnit]
    already_done: int = 0  # files left out because an earlier run wrote them

    @property
    def total_bytes(self) -> int:
        return sum(u.size for u in self.units)

    @property
    def total_items(self) -> int | None:
        counts = [u.num_items for u in self.units]
        return None if any(c is None for c in counts) else sum(counts)  # type: ignore[misc]


def plan_input(spec: InputSpec, items_per_unit: int = 32, done: IdSet | None = None) -> InputPlan:
    """List the input and cut it into work units; raise InputError if nothing is there.

    Files whose ids are in `done` (already written by an earlier run) are left out
    here, before anything is fetched; shard formats skip done members while reading.
    """
    fs, root = filesystem(spec.uri, spec.storage)
    listing, base = _list(fs, root, spec.uri)
    fmt = spec.format or _detect_format(listing, spec)
    if fmt == "files":
        units, skipped = _file_units(fs, base, listing, spec, items_per_unit, done or IdSet())
        return InputPlan(fmt, units, skipped)
    if fmt == "texts":
        from pipeline.io.texts import TEXT_EXTENSIONS, text_tables

        shards = text_tables(listing)
        if not shards:
            raise InputError(f"no text tables ({', '.join(TEXT_EXTENSIONS)}) under {spec.uri}")
        units = [_shard_unit(fs, base, p, listing[p], fmt) for p in shards]
        return InputPlan(fmt, _limit_shards(units, spec.limit))
    suffix = ".tar" if fmt == "webdataset" else ".parquet"
    shards = sorted(p for p in listing if p.lower().endswith(suffix))
    if not shards:
        raise InputError(f"no {suffix} shards under {spec.uri}")
    units = [_shard_unit(fs, base, p, listing[p], fmt) for p in shards]
    return InputPlan(fmt, _limit_shards(units, spec.limit))


def _list(fs, root: str, uri: str) -> tuple[dict[str, int | None], str]:
    """Path -> size of every file, and the folder that relative paths are relative to."""
    base = posixpath.dirname(root)
    try:
        if any(ch in root for ch in "*?["):
            paths = fs.glob(root, detail=True)
        elif fs.isdir(root):
            paths, base = fs.find(root, detail=True), root
        elif fs.exists(root):
            paths = {root: fs.info(root)}
        else:
            raise InputError(f"input {uri} does not exist")
    except (PermissionError, OSError) as exc:
        raise InputError(f"input {uri} could not be listed: {exc}") from None
    files = {p: info.get("size") for p, info in paths.items() if info.get("type", "file") == "file"}
    return files, base


def _detect_format(listing: dict, spec: InputSpec) -> str:
    if spec.manifest:
        return "files"
    endings = {p.lower().rsplit(".", 1)[-1] for p in listing if "." in p}
    if "tar" in endings:
        return "webdataset"
    if "parquet" in endings and not endings & set(spec.extensions):
        return "parquet"
    return "files"


def _file_units(
    fs, base: str, listing: dict, spec: InputSpec, per_unit: int, done: IdSet
) -> tuple[list[WorkUnit], int]:
    if spec.manifest:
        entries = []
        for m in read_manifest(spec.manifest, spec.storage):
            path = (
                m.path
                if m.path.startswith("/") or "://" in m.path
                else posixpath.join(base, m.path)
            )
            path = fs._strip_protocol(path) if "://" in path else path
            entries.append(
                FileEntry(
                    full_uri(fs, path), _shard_of(base, path), listing.get(path), m.text, m.metadata
                )
            )
    else:
        exts = tuple(f".{e.lower()}" for e in spec.extensions)
        entries = [
            FileEntry(full_uri(fs, p), _shard_of(base, p), size)
            for p, size in sorted(listing.items())
            if p.lower().endswith(exts)
        ]
    if spec.limit:
        entries = entries[: spec.limit]
    if not entries:
        raise InputError(f"no audio files ({', '.join(spec.extensions)}) under {spec.uri}")
    todo = [e for e in entries if item_id(e.uri, "") not in done]
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


def _shard_unit(fs, base: str, path: str, size: int | None, fmt: str) -> WorkUnit:
    is_parquet = fmt == "parquet" or (fmt == "texts" and path.lower().endswith(".parquet"))
    rows = _parquet_rows(fs, path) if is_parquet else None
    rel = posixpath.relpath(path, base)
    return WorkUnit(fmt, shard_uri=full_uri(fs, path), shard=rel, size=size or 0, num_items=rows)


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


def _shard_of(base: str, path: str) -> str:
    rel = posixpath.dirname(posixpath.relpath(path, base))
    return rel or "."
