"""Manifests for the `files` input format: JSONL, CSV, TSV or Parquet (optionally .gz).

`path` (or NeMo's `audio_filepath`) is relative to the input prefix (or an
absolute path / URI), `text` (or `reference`/`transcript`/`sentence`/...) is the
reference transcript, and every other column is kept as the item's metadata. A
NeMo line with an `offset` is a segment: it covers `offset` to `offset + duration`
of its file. A line that cannot be parsed is an entry with an `error` naming the
line, never a lost item. TSV (Common Voice) is read without quote processing: a
sentence may begin with `"` (`input.manifest_quoting` changes that).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipeline.errors import InputError
from pipeline.io.table_files import read_table_file
from pipeline.spec import StorageOptions

__all__ = ["ManifestEntry", "read_manifest", "read_table_file"]

TEXT_COLUMNS = ("text", "reference", "transcript", "sentence", "transcription", "normalized_text")
PATH_COLUMNS = ("path", "audio_filepath")


@dataclass(frozen=True)
class ManifestEntry:
    path: str | None  # None only for an entry that could not be parsed
    text: str | None
    metadata: str | None  # JSON object of the other columns
    start: float | None = None  # a segment of the file (NeMo offset, lhotse supervision)
    end: float | None = None
    line: int | None = None  # the manifest line, for error messages
    error: str | None = None  # why this line could not be read (an error row, not a lost item)
    # lhotse, multi-channel recordings: the recording's channels the item is (in its member
    # key), and their positions in the file (what decode averages); None: the whole file.
    channels: tuple[int, ...] | None = None
    file_channels: tuple[int, ...] | None = None


def read_manifest(
    uri: str,
    storage: StorageOptions,
    quoting: str = "auto",
    text_column: str | None = None,
    recordings: str | None = None,
) -> list[ManifestEntry]:
    """Read a manifest; raise InputError naming the file when it cannot be read at all.

    lhotse supervisions (`recording_id`, `start`, `duration`) are read with their
    recordings manifest (`pipeline/io/lhotse.py`)."""
    from pipeline.io import lhotse

    bad: list[tuple[int | None, str]] = []
    table = read_table_file(uri, storage, what="manifest", quoting=quoting, bad_rows=bad)
    if lhotse.is_supervisions(table.column_names):
        entries = [_bad_entry(uri, n, why) for n, why in bad]
        sups = lhotse.supervision_entries(table.to_pylist(), uri, recordings, storage)
        entries += [ManifestEntry(**fields) for fields in sups]
        return entries
    path_col = next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if path_col is None:
        names = [c for c in table.column_names if c != "__line__"]
        raise InputError(
            f"manifest {uri} has no `path` column (nor NeMo's `audio_filepath`; "
            f"columns: {', '.join(names)})"
        )
    text_col = _text_column(table.column_names, text_column)
    extra = [c for c in table.column_names if c not in (path_col, text_col)]
    entries = [_bad_entry(uri, n, why) for n, why in bad]
    for n, row in enumerate(table.to_pylist()):
        entries.append(_entry(uri, row, path_col, text_col, extra, n))
    # A path (and span) named twice, or two spellings of one file, is the listing's to
    # record as a duplicate_id error row: one bad row must not stop the job.
    return entries


def _text_column(names: list[str], wanted: str | None) -> str | None:
    if wanted and wanted in names:
        return wanted
    return next((c for c in TEXT_COLUMNS if c in names), None)


def _entry(uri: str, row: dict, path_col: str, text_col, extra: list[str], n: int):
    line = row.pop("__line__", None)
    where = f"line {line}" if line is not None else f"row {n + 1}"
    path = row[path_col]
    meta = {k: row[k] for k in extra if row.get(k) is not None and k != "__line__"}
    text = row[text_col] if text_col else None
    text = None if text is None else str(text)
    metadata = json.dumps(meta, default=str) if meta else None
    if not path:
        return ManifestEntry(
            None, text, metadata, line=line, error=f"{uri} {where}: empty `{path_col}`"
        )
    start, end, why = _span(row)
    if why:
        return ManifestEntry(str(path), text, metadata, line=line, error=f"{uri} {where}: {why}")
    return ManifestEntry(str(path), text, metadata, start, end, line)


def _span(row: dict) -> tuple[float | None, float | None, str | None]:
    """NeMo: a line with an `offset` covers offset .. offset + duration (to the end without one)."""
    offset = row.get("offset")
    if offset is None:
        return None, None, None
    duration = row.get("duration")
    try:
        start = float(offset)
        end = None if duration is None else start + float(duration)
    except (TypeError, ValueError):
        return None, None, f"offset {offset!r} / duration {duration!r} are not numbers"
    if start < 0 or (end is not None and end <= start):
        return None, None, f"offset {offset!r} / duration {duration!r} is not a span of the file"
    return start, end, None


def _bad_entry(uri: str, line: int | None, why: str) -> ManifestEntry:
    where = f"line {line}" if line is not None else "a line"
    return ManifestEntry(None, None, None, line=line, error=f"{uri} {where}: {why}")
