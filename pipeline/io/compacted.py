"""Which files of a table a reader reads: what `audiobatch compact` has published.

`audiobatch compact` (pipeline/io/compact.py) rewrites a partition's many small files
into a few under new names, `-compacted-<rank>-<token>-<n>.parquet` (`file_name`), in the
same folder. Object storage has no atomic rename of many files, so the switch from the old
files to the new is one object instead: the table's manifest
`_compaction/<table>/<generation>.json`, created exclusively (as the lease is). The
highest generation is the current one; it lists, relative to the table's folder,
every compacted file that is published and every replaced file not yet deleted (with
when it was replaced). A reader

1. reads the current manifest *first* (`published`),
2. then lists the table's files, and reads those that `Published.visible` keeps:
   not replaced, and not a compacted file that no manifest has published (one being
   written right now, or left by a compaction that crashed).

A reader that listed before a manifest appeared reads the old files: they are deleted
only by a later compaction, once `grace_s` has passed since they were replaced, so it
finds them for that long. Readers: the query views (pipeline/query/views.py, and so
the report), `io.tables.read_table` (history, failures). Completion records and
checkpoints are not table files: `compact` merges those under the lease (they are
read only by the lease holder).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

COMPACTION_DIR = "_compaction"
PREFIX = "-compacted-"
# DuckDB takes a view's columns from the first file of the glob (in name order), before any
# filter, so that file must never be one a compaction deletes: a reader that listed it
# while it still existed would fail with FileNotFoundError (on object storage its listing
# is cached for up to `query.connection.LISTING_TTL_S`). Compacted names sort before run
# files' (`-` before digits and letters), and a newer generation's before an older's (the
# rank counts down), so a partition's first file is its current compacted file.
_RANKS = 10**8


def file_name(generation: int, token: str, n: int) -> str:
    """The name of the `n`-th file a compaction of `generation` writes in a partition."""
    return f"{PREFIX}{_RANKS - 1 - generation:08d}-{token}-{n:04d}.parquet"


_RETRIES = 5


@dataclass(frozen=True)
class Published:
    """The current manifest of one table (generation -1: never compacted)."""

    generation: int = -1
    files: frozenset[str] = frozenset()  # published compacted files, relative to the table
    replaced: dict[str, float] = field(default_factory=dict)  # replaced file -> replaced at
    published_at: float = 0.0

    def visible(self, rel: str) -> bool:
        """Whether a reader reads the file at `rel` (relative to the table's folder)."""
        if rel in self.replaced:
            return False
        return not is_compacted(rel) or rel in self.files

    def to_bytes(self, table: str) -> bytes:
        body = {
            "table": table,
            "generation": self.generation,
            "published_at": self.published_at,
            "files": sorted(self.files),
            "replaced": dict(sorted(self.replaced.items())),
        }
        return json.dumps(body, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Published:
        body = json.loads(data)
        return cls(
            generation=int(body["generation"]),
            files=frozenset(body["files"]),
            replaced={str(k): float(v) for k, v in body["replaced"].items()},
            published_at=float(body.get("published_at", 0.0)),
        )


def is_compacted(rel: str) -> bool:
    return posixpath.basename(rel).startswith(PREFIX)


def manifest_dir(root: str, table: str) -> str:
    return posixpath.join(root, COMPACTION_DIR, table)


def manifest_path(root: str, table: str, generation: int) -> str:
    return posixpath.join(manifest_dir(root, table), f"{generation:08d}.json")


def generations(fs, root: str, table: str) -> list[int]:
    """The manifest generations of `table`, oldest first (fsspec or pyarrow `fs`)."""
    stems = [posixpath.basename(n) for n in _names(fs, manifest_dir(root, table))]
    return sorted(int(s[:-5]) for s in stems if s.endswith(".json") and s[:-5].isdigit())


def published(fs, root: str, table: str) -> Published:
    """The current manifest of `table` under `root` (fsspec or pyarrow `fs`)."""
    for _ in range(_RETRIES):  # a manifest deleted between listing and reading: list again
        found = generations(fs, root, table)
        if not found:
            return Published()
        try:
            return Published.from_bytes(_cat(fs, manifest_path(root, table, found[-1])))
        except FileNotFoundError:
            continue
    return Published()


def relative(base: str, path: str) -> str:
    return posixpath.relpath(path, base)


def _names(fs, folder: str) -> list[str]:
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.FileSystem):
        infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        return [i.path for i in infos if i.type == pafs.FileType.File]
    try:
        return [n.rstrip("/") for n in fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return []


def _cat(fs, path: str) -> bytes:
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.FileSystem):
        if fs.get_file_info(path).type != pafs.FileType.File:
            raise FileNotFoundError(path)
        with fs.open_input_stream(path) as f:
            return f.read()
    return fs.cat_file(path)
