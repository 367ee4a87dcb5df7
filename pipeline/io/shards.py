"""Listing the input into work units (on the driver) and reading a unit into item rows.

A work unit is what one Ray read task reads: a group of audio files, one
WebDataset tar, or one Parquet file. Reading is plain Python over fsspec and
yields Arrow tables in `columns.ITEM_SCHEMA`; a member or file that cannot be
read becomes an error row, and an unparseable shard becomes one error row for
the shard, so nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.columns import ITEM_SCHEMA
from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.idset import IdSet
from pipeline.io.manifest import read_manifest
from pipeline.io.storage import filesystem, full_uri
from pipeline.spec import InputSpec

READ_STAGE = "read"


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
    listing = _list(fs, root, spec.uri)
    fmt = spec.format or _detect_format(listing, spec)
    if fmt == "files":
        units, skipped = _file_units(fs, root, listing, spec, items_per_unit, done or IdSet())
        return InputPlan(fmt, units, skipped)
    else:
        suffix = ".tar" if fmt == "webdataset" else ".parquet"
        shards = sorted(p for p in listing if p.lower().endswith(suffix))
        if not shards:
            raise InputError(f"no {suffix} shards under {spec.uri}")
        units = [_shard_unit(fs, root, p, listing[p], fmt, spec) for p in shards]
        units = _limit_shards(units, spec.limit)
    return InputPlan(fmt, units)


def _list(fs, root: str, uri: str) -> dict[str, int | None]:
    try:
        if any(ch in root for ch in "*?["):
            paths = fs.glob(root, detail=True)
        elif fs.isdir(root):
            paths = fs.find(root, detail=True)
        elif fs.exists(root):
            paths = {root: fs.info(root)}
        else:
            raise InputError(f"input {uri} does not exist")
    except (PermissionError, OSError) as exc:
        raise InputError(f"input {uri} could not be listed: {exc}") from None
    return {p: info.get("size") for p, info in paths.items() if info.get("type", "file") == "file"}


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
    fs, root: str, listing: dict, spec: InputSpec, per_unit: int, done: IdSet
) -> tuple[list[WorkUnit], int]:
    base = root if fs.isdir(root) else posixpath.dirname(root)
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


def _shard_unit(fs, root: str, path: str, size: int | None, fmt: str, spec: InputSpec) -> WorkUnit:
    rows = None
    if fmt == "parquet":
        rows = _parquet_rows(fs, path)
    base = root if fs.isdir(root) else posixpath.dirname(root)
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


# ---------------------------------------------------------------- reading


class _Rows:
    """Accumulates item rows and flushes them as Arrow tables of `batch` rows."""

    def __init__(self, batch: int, done: IdSet):
        self.batch = batch
        self.done = done
        self.rows: list[dict] = []

    def add(
        self,
        source: str,
        member: str,
        shard: str,
        data: bytes | None,
        *,
        text=None,
        metadata=None,
        error: RowError | None = None,
    ) -> None:
        iid = item_id(source, member)
        if iid in self.done:  # written by an earlier run
            return
        self.rows.append(
            {
                "item_id": iid,
                "source_uri": source,
                "member": member,
                "shard": shard,
                "audio_bytes": data,
                "reference": text,
                "metadata": metadata,
                "input_bytes": len(data) if data is not None else 0,
                "error_stage": READ_STAGE if error else None,
                "error_code": str(error.code) if error else None,
                "error_message": error.message if error else None,
            }
        )

    def full(self) -> bool:
        return len(self.rows) >= self.batch

    def flush(self) -> pa.Table:
        table = pa.Table.from_pylist(self.rows, schema=ITEM_SCHEMA)
        self.rows = []
        return table


def read_unit(
    unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int = 32, done: IdSet | None = None
) -> Iterator[pa.Table]:
    """Read one work unit into item tables of at most `batch` rows, skipping ids in `done`."""
    reader = {"files": _read_files, "webdataset": _read_tar, "parquet": _read_parquet}[unit.format]
    rows = _Rows(batch, done or IdSet())
    for _ in reader(unit, spec, max_bytes, rows):
        if rows.full():
            yield rows.flush()
    if rows.rows:
        yield rows.flush()


def _read_files(unit: WorkUnit, spec: InputSpec, max_bytes: int, rows: _Rows) -> Iterator[None]:
    fs, _ = filesystem(spec.uri, spec.storage)
    for e in unit.files:
        data, error = _fetch(fs, e.uri, e.size, max_bytes)
        rows.add(e.uri, "", e.shard, data, text=e.text, metadata=e.metadata, error=error)
        yield


def _fetch(fs, uri: str, size: int | None, max_bytes: int) -> tuple[bytes | None, RowError | None]:
    path = fs._strip_protocol(uri)
    if size is not None and size > max_bytes:
        return None, RowError(
            ErrorCode.TOO_LARGE, f"{uri} is {size / 2**20:.1f} MiB, over decode.max_file_mb"
        )
    try:
        return fs.cat_file(path), None
    except FileNotFoundError:
        return None, RowError(
            ErrorCode.MISSING_AUDIO, f"{uri} is listed in the manifest but does not exist"
        )
    except (OSError, PermissionError) as exc:
        return None, RowError(
            ErrorCode.READ_FAILED, f"could not read {uri}: {type(exc).__name__}: {exc}"
        )


def _read_tar(unit: WorkUnit, spec: InputSpec, max_bytes: int, rows: _Rows) -> Iterator[None]:
    fs, _ = filesystem(spec.uri, spec.storage)
    audio_exts = {e.lower() for e in spec.extensions}
    try:
        with (
            fs.open(fs._strip_protocol(unit.shard_uri), "rb") as f,
            tarfile.open(fileobj=f, mode="r|*") as tar,
        ):
            for key, parts in _tar_samples(tar, max_bytes):
                _add_tar_sample(rows, unit, key, parts, audio_exts)
                yield
    except (tarfile.TarError, OSError, EOFError) as exc:
        error = RowError(
            ErrorCode.SHARD_CORRUPT,
            f"tar shard {unit.shard_uri} could not be read to the end: {type(exc).__name__}: {exc}",
        )
        rows.add(unit.shard_uri, "", unit.shard, None, error=error)
        yield


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


def _add_tar_sample(
    rows: _Rows, unit: WorkUnit, key: str, parts: dict, audio_exts: set[str]
) -> None:
    text, metadata = _tar_text(parts)
    audio_ext = next(
        (e for e in parts if e in audio_exts or e.rsplit(".", 1)[-1] in audio_exts), None
    )
    if audio_ext is None:
        error = RowError(
            ErrorCode.MISSING_AUDIO,
            f"{unit.shard_uri}: sample '{key}' has no audio member (has: {', '.join(sorted(parts))})",
        )
        rows.add(unit.shard_uri, key, unit.shard, None, text=text, metadata=metadata, error=error)
        return
    data = parts[audio_ext]
    if isinstance(data, int):
        error = RowError(
            ErrorCode.TOO_LARGE,
            f"{unit.shard_uri}: '{key}.{audio_ext}' is {data / 2**20:.1f} MiB, over decode.max_file_mb",
        )
        rows.add(unit.shard_uri, key, unit.shard, None, text=text, metadata=metadata, error=error)
        return
    rows.add(unit.shard_uri, key, unit.shard, data, text=text, metadata=metadata)


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


def _read_parquet(unit: WorkUnit, spec: InputSpec, max_bytes: int, rows: _Rows) -> Iterator[None]:
    import pyarrow.parquet as pq

    fs, _ = filesystem(spec.uri, spec.storage)
    index = 0
    try:
        with fs.open(fs._strip_protocol(unit.shard_uri), "rb") as f:
            pf = pq.ParquetFile(f)
            columns = _parquet_columns(pf, spec, unit)
            for record_batch in pf.iter_batches(batch_size=rows.batch, columns=columns):
                for row in record_batch.to_pylist():
                    _add_parquet_row(rows, unit, index, row, spec, max_bytes)
                    index += 1
                    yield
    except (pa.ArrowInvalid, OSError, InputError) as exc:
        error = RowError(
            ErrorCode.SHARD_CORRUPT,
            f"parquet shard {unit.shard_uri} could not be read (after {index} rows): {exc}",
        )
        rows.add(unit.shard_uri, "", unit.shard, None, error=error)
        yield


def _parquet_columns(pf, spec: InputSpec, unit: WorkUnit) -> list[str]:
    names = pf.schema_arrow.names
    if spec.audio_column not in names:
        raise InputError(
            f"no audio column '{spec.audio_column}' (input.audio_column); columns: {', '.join(names)}"
        )
    return [spec.audio_column] + ([spec.text_column] if spec.text_column in names else [])


def _add_parquet_row(
    rows: _Rows, unit: WorkUnit, index: int, row: dict, spec: InputSpec, max_bytes: int
) -> None:
    audio = row[spec.audio_column]
    data, path = (
        (audio.get("bytes"), audio.get("path")) if isinstance(audio, dict) else (audio, None)
    )
    text = row.get(spec.text_column) if spec.text_column else None
    member = f"row={index}"
    metadata = json.dumps({"path": path}) if path else None
    error = None
    if data is None:
        error = RowError(
            ErrorCode.MISSING_AUDIO, f"{unit.shard_uri} row {index} has no audio bytes"
        )
    elif len(data) > max_bytes:
        error, data = (
            RowError(
                ErrorCode.TOO_LARGE,
                f"{unit.shard_uri} row {index} is {len(data) / 2**20:.1f} MiB, over decode.max_file_mb",
            ),
            None,
        )
    rows.add(unit.shard_uri, member, unit.shard, data, text=text, metadata=metadata, error=error)
