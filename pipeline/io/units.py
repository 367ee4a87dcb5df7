"""What every input format shares: work units, item ids, item rows, skipping done items.

A work unit is what one Ray read task reads: a group of audio files, one WebDataset
tar, one Parquet file or one text table. Item ids are fixed here: a hash of the
shard URI and the member key, so re-runs and nightly runs find the same ids. The
formats themselves live in `pipeline/io/formats/`, one module each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from pipeline.columns import ITEM_ID
from pipeline.errors import RowError
from pipeline.io.idset import IdSet

if TYPE_CHECKING:
    from pipeline.spec import InputSpec

READ_STAGE = "read"

T = TypeVar("T")


def item_id(source_uri: str, member: str) -> str:
    """Stable id of an item: a hash of its shard URI and its key inside the shard."""
    return hashlib.sha256(f"{source_uri}\n{member}".encode()).hexdigest()[:24]


def span_member(
    start: float | None, end: float | None, channels: tuple[int, ...] | None = None
) -> str:
    """The member key of a segment of a file ("" for the whole file): its start and end, and
    for a channel of a multi-channel recording its channels (`0.5-1.5:ch=1`, `:ch=0+1`)."""
    span = "" if start is None else f"{start!r}-{'' if end is None else repr(end)}"
    return span if channels is None else f"{span}:ch={'+'.join(map(str, channels))}"


@dataclass(frozen=True)
class FileEntry:
    uri: str  # absolute URI of the audio file (of the manifest, for an unparseable line)
    shard: str  # folder relative to the input root, for per-shard reports
    size: int | None
    text: str | None = None
    metadata: str | None = None
    member: str = ""  # "" for a whole file; a segment's span; an error row's own key
    error: RowError | None = None  # refused or unparseable at listing: an error row, never read
    start: float | None = None  # a segment of the file (NeMo offset, lhotse supervision)
    end: float | None = None
    own_id: str | None = None  # the user's id (input.id_column), else derived from uri/member
    version: str | None = None  # the file's etag or mtime when listed (changed sources)
    channels: tuple[int, ...] | None = None  # the file's channels to average (None: all)

    @property
    def item_id(self) -> str:
        return self.own_id or item_id(self.uri, self.member)


@dataclass(frozen=True)
class WorkUnit:
    """What one read task reads. `files` for the files format, else one shard URI."""

    format: str
    shard_uri: str = ""
    shard: str = ""
    size: int = 0
    num_items: int | None = None
    files: tuple[FileEntry, ...] = field(default=())
    prefix: str = ""  # files format: the input prefix that paths (and symlinks) must stay in
    version: str | None = None  # the shard's etag or mtime when listed (changed sources)
    # A shard path that is no file to read (a symlink leading outside, a loop, a broken
    # symlink, a FIFO or directory named like a shard): one error row, never opened.
    error: RowError | None = None
    # parquet with input.id_column: rows whose id an earlier row of the input holds, and
    # where that one is ("URI row=N"); read as duplicate_id error rows (io/own_ids.py).
    repeated_ids: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class InputPlan:
    format: str
    units: list[WorkUnit]
    already_done: int = 0  # items left out because an earlier run settled them
    warnings: tuple[str, ...] = ()  # said at the start of the run (e.g. an unused reference)
    skipped_units: int = 0  # shards left unread: an earlier run settled every item in them
    changed_sources: tuple[str, ...] = ()  # sources whose size or etag/mtime changed since

    @property
    def total_bytes(self) -> int:
        return sum(u.size for u in self.units)

    @property
    def total_items(self) -> int | None:
        counts = [u.num_items for u in self.units]
        return None if any(c is None for c in counts) else sum(counts)  # type: ignore[misc]


@dataclass(frozen=True)
class Listing:
    """Every file under the input (path -> size) on `fs`; relative paths start at `base`."""

    fs: Any  # an fsspec filesystem
    base: str
    files: dict[str, int | None]
    # Local paths that are not plain files (symlinks that do not lead to a file inside the
    # prefix, FIFOs, directories): every format makes those named like its items or shards
    # units or items, and reading says what each one is.
    special: tuple[str, ...] = ()
    # path -> etag (object storage) or mtime in ns (local disk), where the listing has one.
    versions: dict[str, str] = field(default_factory=dict)
    # Shard paths (webdataset, parquet, texts) whose every item an earlier run settled for
    # every task, unchanged since (io/unit_records.py): never read, not even a footer.
    # path -> the items recorded for it.
    settled: dict[str, int] = field(default_factory=dict)
    # parquet with input.id_column: (item_id, source_uri) of earlier runs' records whose
    # source is still listed, so a user id an earlier run took is not taken again
    # (io/own_ids.py); a pyarrow Table, None when there are none.
    recorded_ids: Any = None


@dataclass(frozen=True)
class InputFormat:
    """One input format: how to cut a listing into units and how to read a unit into rows.

    `list_units(listing, spec, items_per_unit, done)` returns the units and how many
    items it left out as done; `read_rows(unit, spec, max_bytes, batch)` yields one
    row dict per item in `schema` (done items included: `batches` skips them);
    `hints(listing, spec)` says what the spec probably meant to use but does not.
    """

    name: str
    schema: pa.Schema
    list_units: Callable[[Listing, InputSpec, int, IdSet], tuple[list[WorkUnit], int]]
    read_rows: Callable[[WorkUnit, InputSpec, int, int], Iterator[dict]]
    # Warnings for the start of a run: a likely reference the spec does not use, naming the
    # spec key that would use it.
    hints: Callable[[Listing, InputSpec], list[str]] = lambda listing, spec: []


def own_id_column(spec: InputSpec) -> str | None:
    """The column whose values are item ids as the user wrote them, when the spec names one.

    Only an explicit `input.id_column` counts: its default (`id`) names the texts
    format's column, and using it silently would change the ids of existing outputs."""
    return spec.id_column if "id_column" in spec.model_fields_set else None


def skip_done(items: Iterable[T], done: IdSet, id_of: Callable[[T], str]) -> Iterator[T]:
    """The items whose ids an earlier run has not written: the one place done items go."""
    return (x for x in items if id_of(x) not in done)


def batches(
    rows: Iterable[dict], schema: pa.Schema, batch: int, done: IdSet | None = None
) -> Iterator[pa.Table]:
    """Item rows not in `done`, as Arrow tables of at most `batch` rows."""
    pending: list[dict] = []
    for row in skip_done(rows, done or IdSet(), lambda r: r[ITEM_ID]):
        pending.append(row)
        if len(pending) >= batch:
            yield pa.Table.from_pylist(pending, schema=schema)
            pending = []
    if pending:
        yield pa.Table.from_pylist(pending, schema=schema)


def error_fields(error: RowError | None) -> dict:
    """The error columns of a row the read step could not read (all None when it could)."""
    return {
        "error_stage": READ_STAGE if error else None,
        "error_code": str(error.code) if error else None,
        "error_message": error.message if error else None,
    }


def audio_row(
    source: str,
    member: str,
    shard: str,
    data: bytes | None,
    *,
    text: str | None = None,
    metadata: str | None = None,
    error: RowError | None = None,
    span: tuple[float | None, float | None] = (None, None),
    own_id: str | None = None,
    channels: tuple[int, ...] | None = None,
    cut: bytes | None = None,
) -> dict:
    """One row of `columns.ITEM_SCHEMA`: an audio item (or the error that stands for it).

    `span` (start, end in seconds) makes the item that segment of the file, `channels`
    (positions in the file) those channels of it averaged; `own_id` (the user's id,
    `input.id_column`) replaces the derived id. `cut` (io/segments.py) is the span alone,
    carried (and counted in `input_bytes`) instead of the whole file."""
    data = data if cut is None else cut
    return {
        "item_id": own_id or item_id(source, member),
        "source_uri": source,
        "member": member,
        "shard": shard,
        "audio_bytes": data,
        "reference": text,
        "metadata": metadata,
        "input_bytes": len(data) if data is not None else 0,
        "start_s": span[0],
        "end_s": span[1],
        "channels": None if channels is None else list(channels),
        "span_cut": cut is not None,
        **error_fields(error),
    }
