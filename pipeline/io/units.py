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


@dataclass(frozen=True)
class FileEntry:
    uri: str  # absolute URI of the audio file
    shard: str  # folder relative to the input root, for per-shard reports
    size: int | None
    text: str | None = None
    metadata: str | None = None
    member: str = ""  # set only for a refused manifest row, so its id is its own
    error: RowError | None = None  # refused at listing: becomes an error row, never read


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


@dataclass(frozen=True)
class Listing:
    """Every file under the input (path -> size) on `fs`; relative paths start at `base`."""

    fs: Any  # an fsspec filesystem
    base: str
    files: dict[str, int | None]
    # Local paths that are not plain files (symlinks, FIFOs, directories): the files
    # format reads those named like audio, and reading says what each one is.
    special: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputFormat:
    """One input format: how to cut a listing into units and how to read a unit into rows.

    `list_units(listing, spec, items_per_unit, done)` returns the units and how many
    items it left out as done; `read_rows(unit, spec, max_bytes, batch)` yields one
    row dict per item in `schema` (done items included: `batches` skips them).
    """

    name: str
    schema: pa.Schema
    list_units: Callable[[Listing, InputSpec, int, IdSet], tuple[list[WorkUnit], int]]
    read_rows: Callable[[WorkUnit, InputSpec, int, int], Iterator[dict]]


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
) -> dict:
    """One row of `columns.ITEM_SCHEMA`: an audio item (or the error that stands for it)."""
    return {
        "item_id": item_id(source, member),
        "source_uri": source,
        "member": member,
        "shard": shard,
        "audio_bytes": data,
        "reference": text,
        "metadata": metadata,
        "input_bytes": len(data) if data is not None else 0,
        **error_fields(error),
    }
