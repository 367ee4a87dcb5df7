"""Reading one work unit into item rows (runs inside Ray read tasks; plain Python).

Yields Arrow tables in `columns.ITEM_SCHEMA`. A file or member that cannot be read
becomes an error row, and an unparseable shard becomes one error row for the
shard, so nothing is dropped silently. Ids already written are skipped.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator

import pyarrow as pa

from pipeline.columns import ITEM_SCHEMA
from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.idset import IdSet
from pipeline.io.listing import WorkUnit, item_id
from pipeline.io.storage import filesystem, is_storage_failure, read_object
from pipeline.spec import InputSpec

READ_STAGE = "read"


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
    if unit.format == "texts":
        from pipeline.io.texts import read_texts

        yield from read_texts(unit, spec, batch, done)
        return
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
        data, error = _fetch(fs, e.uri, e.size, max_bytes, spec.storage.timeout_s)
        rows.add(e.uri, "", e.shard, data, text=e.text, metadata=e.metadata, error=error)
        yield


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
        _shard_failed(
            rows, unit, f"tar shard could not be read to the end: {type(exc).__name__}: {exc}"
        )
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
        _shard_failed(rows, unit, f"parquet shard could not be read (after {index} rows): {exc}")
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


def _shard_failed(rows: _Rows, unit: WorkUnit, why: str) -> None:
    """One error row for the whole shard (member ""); rows read before the failure stay."""
    error = RowError(ErrorCode.SHARD_CORRUPT, f"{unit.shard_uri}: {why}")
    rows.add(unit.shard_uri, "", unit.shard, None, error=error)
