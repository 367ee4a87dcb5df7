"""lhotse manifests for the `files` format: recordings + supervisions, one item per supervision.

`input.manifest` names the supervisions (`supervisions.jsonl` or `.jsonl.gz`, lhotse's
default); the recordings manifest is `input.recordings`, or the same name with
`supervisions` replaced by `recordings`. Each supervision is an item covering
`start` .. `start + duration` of its recording's file (only that span is decoded);
its `id`, `speaker`, `language`, ... are the item's metadata. A supervision whose
recording is missing, or whose recording is not a plain file/URL, is an entry with
an error (an error row), never a lost item.

Channels: a supervision of a multi-channel recording decodes only its `channel` (a list:
the mean of those), from the source holding it (`channels: [0, 1]` in one file, or one
file per channel); its member key then names the channels (`0.5-1.5:ch=1`), so two
supervisions of one span on different channels are two items. A channel the recording
does not have, or channels split over files, is an error row naming the supervision; one
the file turns out not to have fails its decode (`invalid_input`), never a downmix. A
mono recording is read whole and its ids are those of a plain span.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Source:
    """One audio source of a recording: its file or URL (None: neither, not read) and the
    recording's channels it holds, in the file's channel order."""

    path: str | None
    channels: tuple[int, ...]


def _recording_sources(uri: str, storage: StorageOptions) -> dict[str, tuple[_Source, ...]]:
    """recording id -> its sources."""
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
        out[str(row["id"])] = tuple(_source(s) for s in srcs)
    return out


def _source(src: dict) -> _Source:
    path = src.get("source") if src.get("type") in ("file", "url") else None
    return _Source(path, tuple(int(c) for c in src.get("channels") or (0,)))


def _entry(row: dict, n: int, uri: str, sources: dict) -> dict:
    line = row.pop("__line__", None) or n + 1
    rec = str(row.get("recording_id"))
    text = row.get("text")
    if isinstance(row.get("channel"), str):  # ints and lists in one manifest arrive as text
        row["channel"] = _parsed(row["channel"])
    meta = {k: v for k, v in row.items() if v is not None and k != "text"}
    metadata = json.dumps(meta, default=str)
    text = None if text is None else str(text)
    where = f"{uri} line {line}: supervision {str(row.get('id'))!r}"
    if rec not in sources:
        why = f"recording {rec!r} is not in the recordings manifest"
        return _failed(text, metadata, line, f"{where}: {why}")
    try:
        start = float(row["start"])
        end = start + float(row["duration"])
    except (TypeError, ValueError):
        why = f"start {row.get('start')!r} / duration {row.get('duration')!r} are not numbers"
        return _failed(text, metadata, line, f"{where}: {why}")
    picked = _pick(sources[rec], rec, row.get("channel"))
    if isinstance(picked, str):
        return _failed(text, metadata, line, f"{where}: {picked}")
    path, channels, file_channels = picked
    return {
        "path": path,
        "text": text,
        "metadata": metadata,
        "start": start,
        "end": end,
        "line": line,
        "channels": channels,
        "file_channels": file_channels,
    }


def _pick(
    sources: tuple[_Source, ...], rec: str, channel
) -> tuple[str, tuple[int, ...] | None, tuple[int, ...] | None] | str:
    """(file, the recording channels named, their positions in the file) for a supervision's
    `channel`, or why it cannot be read.

    A mono recording is read whole (channels None: its ids stay those of a plain span); a
    multi-channel one from the one file holding every named channel."""
    held = sorted({c for s in sources for c in s.channels})
    wanted = _channels(channel)
    if isinstance(wanted, str):
        return wanted
    if len(held) <= 1 or wanted is None:
        return _whole(sources, rec, held, wanted)
    missing = [c for c in wanted if c not in held]
    if missing:
        return f"channel {_listed(missing)} is not in recording {rec!r} (channels {held})"
    src = next((s for s in sources if set(wanted) <= set(s.channels)), None)
    if src is None:
        return (
            f"channels {list(wanted)} of recording {rec!r} are in different files; one item is "
            "read from one file (one supervision per channel)"
        )
    if src.path is None:
        return f"recording {rec!r} has no file or URL source for channel {_listed(wanted)}"
    return src.path, wanted, tuple(src.channels.index(c) for c in wanted)


def _whole(sources, rec: str, held: list[int], wanted) -> tuple[str, None, None] | str:
    """A mono recording, or a supervision naming no channel: its one file, every channel."""
    if wanted is not None and any(c not in held for c in wanted):
        return f"channel {_listed(wanted)} is not in recording {rec!r} (channels {held})"
    if len(sources) > 1:
        return (
            f"the supervision names no channel and recording {rec!r} has {len(sources)} "
            "files (one per channel): give it a `channel`"
        )
    if not sources or sources[0].path is None:
        return f"recording {rec!r} has no file or URL source (only those are read)"
    return sources[0].path, None, None


def _parsed(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _channels(value) -> tuple[int, ...] | None | str:
    """A supervision's `channel` (an int or a list) as a tuple; None when it has none; a
    message when it is neither."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(c, int) and not isinstance(c, bool) for c in values):
        return f"channel {value!r} is not an int or a list of ints"
    return tuple(values)


def _listed(channels) -> str:
    return str(channels[0]) if len(channels) == 1 else str(list(channels))


def _failed(text: str | None, metadata: str, line: int, error: str) -> dict:
    return {"path": None, "text": text, "metadata": metadata, "line": line, "error": error}
