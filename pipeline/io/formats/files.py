"""The `files` input format: a prefix of audio files, with an optional manifest.

Files are grouped into units of `items_per_unit`. Files whose ids an earlier run
wrote are left out here, at listing time, before anything is fetched. A file that
is too large, missing or unreadable becomes an error row, and so does a manifest
path that is refused or names a file (and span) again (`pipeline/io/paths.py`), and
a manifest line that cannot be parsed (member `line=N`). A manifest line with a
span (NeMo `offset`, a lhotse supervision) is one item covering that span of its
file, its member key the span's start and end; a file is fetched once per unit however
many segments of it the unit holds, and each segment's row carries only its span
(`pipeline/io/segments.py`). `input.references: librispeech`
takes the references from the `*.trans.txt` files beside the audio.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from dataclasses import replace

from pipeline.columns import ITEM_SCHEMA
from pipeline.errors import ErrorCode, InputError, RowError
from pipeline.io.idset import IdSet
from pipeline.io.manifest import read_manifest
from pipeline.io.paths import check_path, normalise, read_local
from pipeline.io.segments import SharedReads, cut_span
from pipeline.io.storage import (
    bounded,
    filesystem,
    full_uri,
    full_uris,
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
    own_id_column,
    skip_done,
    span_member,
)
from pipeline.io.wav_window import read_window, windowed_uris
from pipeline.spec import InputSpec


def list_units(
    listing: Listing, spec: InputSpec, per_unit: int, done: IdSet
) -> tuple[list[WorkUnit], int]:
    """Units of at most `per_unit` files not yet done, and how many were left out as done."""
    if spec.manifest:
        entries = _manifest_entries(listing, spec)[: spec.limit or None]
        total = len(entries)
        todo = list(skip_done(entries, done, lambda e: e.item_id))
    else:
        total, todo = _audio_entries(listing, spec, done)
    if not total:
        raise InputError(f"no audio files ({', '.join(spec.extensions)}) under {spec.uri}")
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
    return units, total - len(todo)


def read_rows(unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int) -> Iterator[dict]:
    """One row per entry; a file named by several entries (segments) is fetched once, and
    a segment's row holds only its span (`pipeline/io/segments.py`)."""
    fs, _ = filesystem(spec.uri, spec.storage)
    local = is_local(fs)

    def fetch(e: FileEntry) -> tuple[bytes | None, RowError | None]:
        if local:  # symlinks resolved and checked, FIFOs and devices never read
            got = read_local(
                fs._strip_protocol(e.uri),
                unit.prefix,
                allow_outside=spec.allow_outside_paths,
                max_bytes=max_bytes,
            )
            return (None, got) if isinstance(got, RowError) else (got, None)
        return _fetch(fs, e.uri, e.size, max_bytes, spec.storage.timeout_s)

    shared = SharedReads(unit.files, fetch)
    windows = {} if local else _windows(fs, unit.files, spec.storage.timeout_s, max_bytes)
    for e in unit.files:
        window, cut = windows.get(e.uri), None
        if window is not None:
            cut = cut_span(window.data, e.start, e.end, max_bytes, window.first)
        if e.error is not None:  # refused while listing: never read
            data, error = None, e.error
        elif cut is not None:  # served from the unit's ranged read of the file
            data, error = cut, None
            shared.done(e)
        else:
            data, error = shared.read(e)
        if cut is None and data is not None and e.start is not None:
            cut = cut_span(data, e.start, e.end, max_bytes)
        yield audio_row(
            e.uri,
            e.member,
            e.shard,
            data,
            text=e.text,
            metadata=e.metadata,
            error=error,
            span=(e.start, e.end),
            own_id=e.own_id,
            channels=e.channels,
            cut=cut,
        )


def hints(listing: Listing, spec: InputSpec) -> list[str]:
    """A likely reference the spec does not use: LibriSpeech `*.trans.txt` files."""
    if spec.manifest or spec.references == "librispeech":
        return []
    trans = [p for p in listing.files if p.endswith(".trans.txt")]
    if not trans:
        return []
    return [
        f"no references are read, but {len(trans)} LibriSpeech transcript files "
        f"(e.g. {posixpath.relpath(trans[0], listing.base)}) are under the input: set "
        "input.references: librispeech to score against them"
    ]


FORMAT = InputFormat("files", ITEM_SCHEMA, list_units, read_rows, hints)


def _manifest_entries(listing: Listing, spec: InputSpec) -> list[FileEntry]:
    """One entry per manifest line, paths normalised so aliases of one file compare equal;
    a refused path, a file (and span) named by an earlier line, or a line that cannot be
    parsed is an entry with its error."""
    manifest_fs, manifest_path = filesystem(spec.manifest, spec.storage)
    manifest_uri = full_uri(manifest_fs, manifest_path)
    place = _Place(listing, spec, posixpath.dirname(manifest_path))
    lines = read_manifest(
        spec.manifest, spec.storage, spec.manifest_quoting, spec.text_column, spec.recordings
    )
    entries, seen = [], {}
    for row, m in enumerate(lines):
        if m.error:
            member = f"line={m.line}" if m.line is not None else f"manifest-row={row}"
            error = RowError(ErrorCode.INVALID_INPUT, m.error)
            entries.append(FileEntry(manifest_uri, ".", None, m.text, m.metadata, member, error))
            continue
        path, error = place.of(m.path)
        uri = m.path if "://" in path else full_uri(listing.fs, path)
        key = (uri, m.start, m.end, m.channels)
        if error is None and key in seen:
            error = _named_before(row, m, uri, *seen[key])
        seen.setdefault(key, (row, m.path))
        entries.append(_entry(listing, m, row, path, uri, error))
    column = own_id_column(spec)
    return _with_own_ids(entries, column) if column else entries


class _Place:
    """Where a manifest's paths lead: the listing's filesystem, relative to the manifest."""

    def __init__(self, listing: Listing, spec: InputSpec, manifest_dir: str) -> None:
        self.listing, self.spec, self.manifest_dir = listing, spec, manifest_dir
        self.local = is_local(listing.fs)
        self.protocols = ("file", "local") if self.local else (spec.uri.split("://", 1)[0],)

    def of(self, raw: str) -> tuple[str, RowError | None]:
        """The normalised path of a manifest's `raw` path, and why it is refused (or None)."""
        if "://" in raw and raw.split("://", 1)[0] not in self.protocols:
            why = f"{raw!r} is on another storage than the input {self.spec.uri}"
            return raw, RowError(ErrorCode.INVALID_INPUT, why)
        path = self.listing.fs._strip_protocol(raw) if "://" in raw else raw
        if not path.startswith("/"):
            path = _resolve(self.listing, path, self.manifest_dir)
        base, allow = self.listing.base, self.spec.allow_outside_paths
        return path, check_path(path, base, allow_outside=allow, local=self.local)


def _named_before(row: int, m, uri: str, first_row: int, first: str) -> RowError:
    """A manifest line naming the file (and span) an earlier line named."""
    span = "" if m.start is None else f" (span {span_member(m.start, m.end, m.channels)})"
    return RowError(
        ErrorCode.DUPLICATE_ID,
        f"manifest row {row + 1} ({m.path!r}) names the file{span} of row {first_row + 1} "
        f"({first!r}): {uri}",
    )


def _entry(listing: Listing, m, row: int, path: str, uri: str, error: RowError | None):
    """A manifest line's FileEntry; a refused one carries its row as its member."""
    if error:
        shard, size, version, member = ".", None, None, f"manifest-row={row}"
    else:
        shard, size = _shard_of(listing.base, path), listing.files.get(path)
        version, member = listing.versions.get(path), span_member(m.start, m.end, m.channels)
    return FileEntry(
        uri,
        shard,
        size,
        m.text,
        m.metadata,
        member,
        error,
        start=m.start,
        end=m.end,
        version=version,
        channels=m.file_channels,
    )


def _resolve(listing: Listing, path: str, manifest_dir: str) -> str:
    """A relative manifest path, normalised: under the input prefix, else (when that is not
    there but this is) beside the manifest (NeMo's rule) or in its `clips/` (Common
    Voice's layout)."""
    first = normalise(posixpath.join(listing.base, path))
    if first in listing.files:
        return first
    for folder in (manifest_dir, posixpath.join(manifest_dir, "clips")):
        candidate = normalise(posixpath.join(folder, path))
        if candidate in listing.files:
            return candidate
    return first


def _with_own_ids(entries: list[FileEntry], column: str) -> list[FileEntry]:
    """Each entry with the id its manifest gives in `column`; a repeated id is an error row
    (under the derived id, so it cannot shadow the first)."""
    seen: dict[str, FileEntry] = {}
    out = []
    for e in entries:
        value = json.loads(e.metadata).get(column) if e.metadata else None
        if e.error or value is None:
            out.append(e)
        elif str(value) in seen:
            why = (
                f"{e.uri}{f' [{e.member}]' if e.member else ''}: id {value!r} "
                f"(input.id_column: {column}) is also {seen[str(value)].uri}'s"
            )
            out.append(replace(e, error=RowError(ErrorCode.DUPLICATE_ID, why)))
        else:
            seen[str(value)] = e
            out.append(replace(e, own_id=str(value)))
    return out


def _audio_entries(listing: Listing, spec: InputSpec, done: IdSet) -> tuple[int, list[FileEntry]]:
    """How many audio files the input has (up to `input.limit`), and entries for those
    not in `done`: ids are worked out for all at once, entries made only for the rest
    (a night over 1M done files makes none)."""
    exts = tuple(f".{e.lower()}" for e in spec.extensions)
    # Symlinks, FIFOs and directories named like audio are items too: reading them
    # follows a symlink that stays inside, and makes anything else one error row.
    paths = {**listing.files, **dict.fromkeys(listing.special)}
    audio = sorted(p for p in paths if p.lower().endswith(exts))[: spec.limit or None]
    uris = full_uris(listing.fs, audio)
    settled = done.contains_many([item_id(u, "") for u in uris])
    refs = _librispeech_refs(listing) if spec.references == "librispeech" else {}
    todo = [
        FileEntry(
            uri,
            _shard_of(listing.base, p),
            paths[p],
            refs.get(posixpath.basename(p).rsplit(".", 1)[0]),
            version=listing.versions.get(p),
        )
        for p, uri, skip in zip(audio, uris, settled.tolist(), strict=True)
        if not skip
    ]
    return len(audio), todo


def _librispeech_refs(listing: Listing) -> dict[str, str]:
    """Utterance id -> text from every `*.trans.txt` (lines `19-198-0000 TEXT ...`)."""
    refs: dict[str, str] = {}
    for p in sorted(listing.files):
        if not p.endswith(".trans.txt"):
            continue
        try:
            text = listing.fs.cat_file(p).decode("utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"could not read {full_uri(listing.fs, p)}: {exc}") from None
        for line in text.splitlines():
            utt, _, words = line.strip().partition(" ")
            if utt:
                refs[utt] = words.strip()
    return refs


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


def _windows(fs, entries, timeout_s: float, max_bytes: int) -> dict:
    """uri -> one ranged read covering the unit's segments of each long WAV it names
    (`pipeline/io/wav_window.py`); a file that is no such WAV, or whose ranged reads
    fail, is left to the whole-file read (whose errors are the known ones)."""
    out = {}
    for uri in windowed_uris(entries):
        spans = [(e.start, e.end) for e in entries if e.uri == uri and e.error is None]
        size = next(e.size for e in entries if e.uri == uri)
        path = fs._strip_protocol(uri)

        def read_range(start: int, end: int, path=path) -> bytes:
            # By keyword: s3fs's cat_file takes version_id second.
            read = lambda: fs.cat_file(path, start=start, end=end)  # noqa: E731
            return bounded(read, timeout_s, f"reading {path}")

        try:
            window = read_window(read_range, size, spans, max_bytes)
        except Exception as exc:
            if not is_storage_failure(exc):
                raise
            window = None
        if window is not None:
            out[uri] = window
    return out


def _shard_of(base: str, path: str) -> str:
    prefix = base.rstrip("/") + "/"
    rel = path[len(prefix) :] if path.startswith(prefix) else None
    if rel is None or "/." in f"/{rel}":  # not plainly under base: let posixpath decide
        rel = posixpath.relpath(path, base)
    return posixpath.dirname(rel) or "."
