"""lhotse manifests for the `files` format: recordings + supervisions, one item per supervision.

`input.manifest` names the supervisions (`supervisions.jsonl` or `.jsonl.gz`, lhotse's
default); the recordings manifest is `input.recordings`, or the same name with
`supervisions` replaced by `recordings`. Each supervision is an item covering
`start` .. `start + duration` of its recording's file (only that span is decoded);
its `id`, `speaker`, `language`, ... are the item's metadata. A supervision whose
recording is missing, or whose recording is not a plain file/URL, is an entry with
an error (an error row), never a lost item.
"""

from __future__ import annotations

import json
import posixpath

from pipeline.errors import InputError
from pipeline.io.table_files import read_table_file
from pipeline.spec import StorageOptions

SUPERVISION_KEYS = {"recording_id", "start", "duration"}


def is_supervisions(columns: list[str]) -> bool:
    return set(columns) >= SUPERVISION_KEYS


def recordings_uri(supervisions: str, recordings: str | None) -> str:
    """`recordings`, or the supervisions' file name with `supervisions` -> `recordings`."""
    if recordings:
        return recordings
    folder, name = posixpath.split(supervisions)
    if "supervisions" not in name:
        raise InputError(
            f"{supervisions} holds lhotse supervisions: name its recordings manifest in "
            "input.recordings"
        )
    return posixpath.join(folder, name.replace("supervisions", "recordings"))


def supervision_entries(
    rows: list[dict], uri: str, recordings: str | None, storage: StorageOptions
) -> list[dict]:
    """One `manifest.ManifestEntry`'s fields per supervision row (rows as read from the
    supervisions manifest)."""
    rec_uri = recordings_uri(uri, recordings)
    sources = _recording_sources(rec_uri, storage)
    return [_entry(row, n, uri, sources) for n, row in enumerate(rows)]


def _recording_sources(uri: str, storage: StorageOptions) -> dict[str, str | None]:
    """recording id -> its audio path (None when its source is not a file or URL)."""
    table = read_table_file(uri, storage, what="lhotse recordings manifest")
    if "id" not in table.column_names or "sources" not in table.column_names:
        raise InputError(
            f"{uri} is not a lhotse recordings manifest (no `id`/`sources`; columns: "
            f"{', '.join(table.column_names)})"
        )
    out = {}
    for row in table.to_pylist():
        srcs = row["sources"]
        srcs = json.loads(srcs) if isinstance(srcs, str) else srcs or []
        first = srcs[0] if srcs else {}
        out[str(row["id"])] = first.get("source") if first.get("type") in ("file", "url") else None
    return out


def _entry(row: dict, n: int, uri: str, sources: dict) -> dict:
    line = row.pop("__line__", None) or n + 1
    rec = str(row.get("recording_id"))
    text = row.get("text")
    meta = {k: v for k, v in row.items() if v is not None and k != "text"}
    metadata = json.dumps(meta, default=str)
    text = None if text is None else str(text)
    if rec not in sources:
        why = f"recording {rec!r} is not in the recordings manifest"
        return _failed(text, metadata, line, f"{uri} line {line}: {why}")
    if sources[rec] is None:
        why = f"recording {rec!r} has no file or URL source (only those are read)"
        return _failed(text, metadata, line, f"{uri} line {line}: {why}")
    try:
        start = float(row["start"])
        end = start + float(row["duration"])
    except (TypeError, ValueError):
        why = f"start {row.get('start')!r} / duration {row.get('duration')!r} are not numbers"
        return _failed(text, metadata, line, f"{uri} line {line}: {why}")
    return {
        "path": sources[rec],
        "text": text,
        "metadata": metadata,
        "start": start,
        "end": end,
        "line": line,
    }


def _failed(text: str | None, metadata: str, line: int, error: str) -> dict:
    return {"path": None, "text": text, "metadata": metadata, "line": line, "error": error}
