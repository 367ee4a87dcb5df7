"""Completion per item *and task*: what a run must still do, and the retry policy.

Every write of the sink also writes `_completion/<base>.parquet`: one record per item
and task it settled, with the outcome (`ok` or the error code), whether that error is
transient, the item's source and the run. The file carries the write's base name, so
Ray's two-phase checkpoint covers it like the table files: a write that crashed before
its commit is deleted on the next run, and only records of committed writes
(`_checkpoint/<base>.parquet`) count.

At planning, the latest outcome of each (item, task) decides whether the task is done
for the item: `ok` is done; a transient error (`read_failed`, `write_failed`, a
`model_failed` from running out of memory) is retried by the next run; a permanent
error is done unless `audiobatch run --retry-errors [CODE ...]` names its code (or all
codes); an error that failed a whole shard (member "", e.g. a missing audio column) is
retried once the input spec changes. An item is skipped at read time only when every
task of the spec is done for it; otherwise it is read and decoded once, and each stage
skips the tasks already done for it (`{task}__done`).

Each record also says what the item's source (file or shard) looked like when it was
read: its size and its etag or mtime (`source_size`, `source_version`; nullable, null
in records written before them). `source_state` gives the latest of these per source,
so a run can tell a changed source (io/sources.py); `incremental.reprocess_changed`
makes `settle` treat every item of a changed source as not done.

Outputs written before these records existed have only the checkpoint's item ids:
those count as done for every task (the earlier per-item behaviour).

Reading is columnar: the records are read with pyarrow (low-cardinality columns
dictionary-encoded), the latest outcome per (item, task) is found by one sort, and the
done ids are NumPy fixed-width bytes; no Python object per record. The files are read
each on its own, a few at a time on threads (no dataset: over 31,250 small files it kept
~46 KiB a file and left a table of as many chunks), and concatenated every `_PIECE_ROWS`
records, so a night over a big run's files holds little more than the records
themselves (benchmarks/RESULTS.md).

Merging (`compact`) streams the same pieces into the merged file, so it too holds one
piece at a time. A successful run merges the small files it and any earlier run left
(`merge_small`, runner/__init__.py, under the lease); the planner merges what a run
that died before its end left, once there are many.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.errors import ErrorCode
from pipeline.io.idset import IdSet

COMPLETION_DIR = "_completion"
CHECKPOINT_DIR = "_checkpoint"  # Ray's checkpoints: one file of item ids per committed write
PENDING_SUFFIX = ".pending.parquet"  # Ray's uncommitted checkpoints
OK = "ok"

COMPLETION = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # ok | an ErrorCode value
        pa.field("transient", pa.bool_(), nullable=False),
        pa.field("shard_level", pa.bool_(), nullable=False),  # the error failed a whole shard
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("input_hash", pa.string(), nullable=False),  # spec.input_hash() of the run
        pa.field("run_id", pa.string(), nullable=False),
        # Added later (nullable; read by name, null in older files): the source when read.
        pa.field("source_size", pa.int64()),
        pa.field("source_version", pa.string()),  # etag (object storage) or mtime ns
    ]
)
# Columns with few distinct values: read dictionary-encoded (memory at 1M records).
_DICTIONARY = ("task", "outcome", "input_hash", "run_id")
# Records per piece while reading or merging (about 2,000 files of one 32-item write).
_PIECE_ROWS = 65_536
COMPACTED_PREFIX = "compacted-"  # the base name of a merged completion file

_ID_SCHEMA = pa.schema([pa.field("item_id", pa.string())])  # a checkpoint file's

TRANSIENT_CODES = frozenset({ErrorCode.READ_FAILED, ErrorCode.WRITE_FAILED})
_OOM_MARKERS = ("OutOfMemoryError", "out of memory", "MemoryError")


def is_transient(code: str, message: str | None) -> bool:
    """Whether an error is worth retrying unasked: storage failures, and a model that ran
    out of memory (another night may have a free GPU); not a corrupt or invalid item."""
    if code in TRANSIENT_CODES:
        return True
    return code == ErrorCode.MODEL_FAILED and any(m in (message or "") for m in _OOM_MARKERS)


@dataclass(frozen=True)
class RetryPolicy:
    """Which permanent errors a run retries: none by default; `codes` empty + `all`."""

    codes: frozenset[str] = field(default_factory=frozenset)
    all: bool = False

    def retries(self, code: str) -> bool:
        return self.all or code in self.codes


@dataclass(frozen=True)
class Completion:
    """What earlier runs settled, per task (ids as sorted fixed-width bytes)."""

    done: dict[str, IdSet]  # task -> items whose task is done
    done_all: IdSet  # items done for every task of the spec: skipped at read time
    retried: int  # (item, task) pairs whose latest error is being retried this run
    legacy: int  # checkpointed ids with no completion record (counted done everywhere)
    files: tuple[str, ...] = ()  # the committed completion files read
    # Sources with an (item, task) this run must do again (a retried error, a reprocessed
    # changed source): their shards are read even when a unit record says settled.
    pending_sources: frozenset[str] = frozenset()
    reprocessed: int = 0  # (item, task) pairs of changed sources done again this run


@dataclass(frozen=True)
class Records:
    """The committed completion records of an output, as read (before any policy)."""

    table: pa.Table | None  # COMPLETION columns; None when there are none
    legacy: np.ndarray  # ids of committed writes without records (sorted bytes)
    files: tuple[str, ...] = ()


def read_records(fs: pafs.FileSystem, root: str, checkpoint_dir: str) -> Records:
    """The committed completion records under `root` (only writes whose checkpoint is
    committed count) and the ids of older committed writes that left none."""
    committed = _committed_bases(fs, posixpath.join(root, checkpoint_dir))
    records = committed_records(fs, root, checkpoint_dir, committed)
    covered = {_base(f) for f in records}
    legacy = _legacy_ids(fs, root, checkpoint_dir, committed - covered)
    return Records(_read(fs, records), legacy, tuple(records))


def committed_records(
    fs: pafs.FileSystem, root: str, checkpoint_dir: str, committed: set[str] | None = None
) -> list[str]:
    """The completion files of committed writes (`committed`: their base names, if known)."""
    from pipeline.io.tables import parquet_files

    if committed is None:
        committed = _committed_bases(fs, posixpath.join(root, checkpoint_dir))
    folder = posixpath.join(root, COMPLETION_DIR)
    return [f for f in parquet_files(fs, folder) if _base(f) in committed]


def load_completion(
    fs: pafs.FileSystem,
    root: str,
    checkpoint_dir: str,
    tasks: Sequence[str],
    input_hash: str,
    policy: RetryPolicy,
    reprocess: frozenset[str] = frozenset(),
) -> Completion:
    """Read the committed completion records under `root` and apply the retry policy."""
    return settle(read_records(fs, root, checkpoint_dir), tasks, input_hash, policy, reprocess)


def settle(
    records: Records,
    tasks: Sequence[str],
    input_hash: str,
    policy: RetryPolicy,
    reprocess: frozenset[str] = frozenset(),
) -> Completion:
    """What is done per task under `policy`; items of the sources in `reprocess` (changed
    since they were processed) are not done, for any task."""
    latest = _latest(records.table)
    legacy = records.legacy
    done, retried, redo, pending = {}, 0, 0, set()
    for task in tasks:
        rows = latest.get(task)
        ids = np.array([], dtype="S1")
        if rows is not None:
            table, item = rows
            retry = _retried(table, input_hash, policy)
            again = _of_sources(table.column("source_uri"), reprocess) & ~retry
            retried, redo = retried + int(retry.sum()), redo + int(again.sum())
            todo = retry | again
            if todo.any():
                chosen = table.column("source_uri").filter(pa.array(todo))
                pending.update(chosen.unique().to_pylist())
            ids = item[~todo]
        done[task] = IdSet(np.unique(np.concatenate([ids.astype("S"), legacy.astype("S")])))
    every = [done[t].ids for t in tasks]
    both = every[0]
    for ids in every[1:]:
        both = np.intersect1d(both, ids, assume_unique=True)
    return Completion(
        done, IdSet(both), retried, len(legacy), records.files, frozenset(pending), redo
    )


def source_state(records: Records) -> pa.Table | None:
    """Per source URI: its size and version in its latest records (null where those
    records predate the columns). One sort of (source, run) and a take of the last row of
    each source: a hash group-by over 1M sources cost several times the memory."""
    import pyarrow.compute as pc

    t = records.table
    if t is None or t.num_rows == 0:
        return None
    keys = _decoded(t.select(["source_uri", "run_id"]), "run_id")
    order = pc.sort_indices(keys, sort_keys=[("source_uri", "ascending"), ("run_id", "ascending")])
    del keys
    uri = t.column("source_uri").take(order).combine_chunks()
    last = np.ones(len(uri), dtype=bool)
    if len(uri) > 1:
        last[:-1] = _mask(pc.not_equal(uri.slice(1), uri.slice(0, len(uri) - 1)))
    rows = order.filter(pa.array(last))
    return pa.table(
        {
            "source_uri": uri.filter(pa.array(last)),
            "source_size": t.column("source_size").take(rows),
            "source_version": t.column("source_version").take(rows),
        }
    )


def source_items(records: Records, uris: set[str]) -> dict[str, int]:
    """How many distinct items each of `uris` holds in the records."""
    import pyarrow.compute as pc

    t = records.table
    if t is None or not uris:
        return {}
    t = t.select(["source_uri", "item_id"])
    t = t.filter(pc.is_in(t.column("source_uri"), pa.array(sorted(uris))))
    counts = t.group_by("source_uri").aggregate([("item_id", "count_distinct")])
    return dict(
        zip(
            counts.column("source_uri").to_pylist(),
            counts.column("item_id_count_distinct").to_pylist(),
            strict=True,
        )
    )


def compact(
    fs: pafs.FileSystem, root: str, checkpoint_dir: str, files: Sequence[str], run_id: str
) -> int:
    """Merge many committed completion files into one; how many were merged.

    A night writes one small file per write (32 items by default): after a few nights,
    reading thousands of them dominates planning (benchmarks/RESULTS.md). The merged
    file gets a committed checkpoint of its own name, so it counts like any write; the
    small files (and their checkpoints) are deleted only after both are written, so a
    crash in between leaves duplicate records, which `_latest` reads as one. A crash
    while the merged file is written leaves no file under its name (written under a
    temporary name, or an upload not yet completed), and one without its checkpoint is
    not read. Every column of every file is kept, by name (a newer writer's extra
    columns are nulls in older records); the records stream through in pieces, and a
    piece with a column the merged file lacks starts a further merged file
    (`compacted-<run_id>-<n>`). Called by the lease holder only: the planner, a run's
    end (`merge_small`), and `audiobatch compact`."""
    from pipeline.io.tables import ParquetStream

    if not files:
        return 0
    base = f"{COMPACTED_PREFIX}{run_id}"
    folder, checkpoint = posixpath.join(root, COMPLETION_DIR), posixpath.join(root, checkpoint_dir)
    written: list[str] = []
    records = ids = None
    try:
        for piece in _pieces(fs, list(files), every_column=True):
            if records is not None and not set(piece.schema.names) <= set(records.schema.names):
                _commit_merged(records, ids)
                records = ids = None
            if records is None:
                name = base if not written else f"{base}-{len(written)}"
                written.append(name)
                path = posixpath.join(folder, f"{name}.parquet")
                records = ParquetStream(fs, path, _merged_schema(piece.schema))
                ids = ParquetStream(fs, posixpath.join(checkpoint, f"{name}.parquet"), _ID_SCHEMA)
            records.write(_conformed(piece, records.schema))
            ids.write(pa.table({"item_id": piece.column("item_id")}, schema=_ID_SCHEMA))
        if records is not None:
            _commit_merged(records, ids)
    except BaseException:
        for stream in (records, ids):
            if stream is not None:
                stream.abort()
        raise
    for f in files:
        fs.delete_file(f)
        marker = posixpath.join(checkpoint, f"{_base(f)}.parquet")
        if fs.get_file_info(marker).type == pafs.FileType.File:
            fs.delete_file(marker)
    return len(files)


def _merged_schema(piece: pa.Schema) -> pa.Schema:
    """The COMPLETION columns as declared, then any other column of `piece` (nullable:
    the records of earlier pieces have none)."""
    unified = pa.unify_schemas([COMPLETION, piece], promote_options="permissive")
    others = [f.with_nullable(True) for f in unified if f.name not in COMPLETION.names]
    return pa.schema([*COMPLETION, *others])


def _commit_merged(records, ids) -> None:
    """The merged file, then its checkpoint: from then on it counts (duplicates of the
    small files' records until those are deleted)."""
    records.close()
    ids.close()


def merge_small(fs: pafs.FileSystem, root: str, checkpoint_dir: str, run_id: str) -> int:
    """At a successful run's end, under its lease: merge the committed completion files
    that are not merged ones already (this run's writes, and any a dead run left) into
    one, so the next night reads few files; how many were merged (0 when at most one)."""
    small = [
        f
        for f in committed_records(fs, root, checkpoint_dir)
        if not _base(f).startswith(COMPACTED_PREFIX)
    ]
    if len(small) < 2:
        return 0
    # A name of its own: the planner of this run may have merged under `run_id` already.
    return compact(fs, root, checkpoint_dir, small, f"{run_id}-end")


def completion_rows(
    batch: pa.Table, tasks: Sequence[str], run_id: str, input_hash: str
) -> pa.Table | None:
    """One record per item of a finished batch and task it settled (done tasks skipped)."""
    from pipeline import columns as C

    item_code = batch.column(C.ERROR_CODE).to_pylist()
    item_msg = batch.column(C.ERROR_MESSAGE).to_pylist()
    ids = batch.column(C.ITEM_ID).to_pylist()
    members = batch.column(C.MEMBER).to_pylist()
    sources = batch.column(C.SOURCE_URI).to_pylist()
    sizes = _column(batch, C.SOURCE_SIZE)
    versions = _column(batch, C.SOURCE_VERSION)
    out: dict[str, list] = {f.name: [] for f in COMPLETION}
    for task in tasks:
        done = _column(batch, C.task_column(task, C.TASK_DONE))
        code = _column(batch, C.task_column(task, C.ERROR_CODE))
        msg = _column(batch, C.task_column(task, C.ERROR_MESSAGE))
        for i in range(batch.num_rows):
            if done[i]:
                continue
            c, m = (item_code[i], item_msg[i]) if item_code[i] else (code[i], msg[i])
            out["item_id"].append(ids[i])
            out["task"].append(task)
            out["outcome"].append(c or OK)
            out["transient"].append(bool(c) and is_transient(c, m))
            out["shard_level"].append(bool(item_code[i]) and members[i] == "")
            out["source_uri"].append(sources[i])
            out["input_hash"].append(input_hash)
            out["run_id"].append(run_id)
            out["source_size"].append(sizes[i])
            out["source_version"].append(versions[i])
    return pa.table(out, schema=COMPLETION) if out["item_id"] else None


def mark_done(table: pa.Table, done: dict[str, IdSet]) -> pa.Table:
    """Add `{task}__done` to freshly read rows: the tasks an earlier run settled."""
    from pipeline import columns as C

    ids = table.column(C.ITEM_ID).to_pylist()
    for task, settled in done.items():
        flags = settled.contains_many(ids)
        table = table.append_column(C.task_column(task, C.TASK_DONE), pa.array(flags, pa.bool_()))
    return table


def mark_sources(table: pa.Table, unit) -> pa.Table:
    """Add `source_size` and `source_version` to freshly read rows of a work unit: what
    their file (files format) or shard looked like when listed."""
    from pipeline import columns as C

    if unit.files:
        known = {e.uri: (e.size, e.version) for e in unit.files if e.error is None}
        pairs = [known.get(u, (None, None)) for u in table.column(C.SOURCE_URI).to_pylist()]
        sizes, versions = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        sizes, versions = [unit.size] * table.num_rows, [unit.version] * table.num_rows
    table = table.append_column(C.SOURCE_SIZE, pa.array(sizes, pa.int64()))
    return table.append_column(C.SOURCE_VERSION, pa.array(versions, pa.string()))


def _column(batch: pa.Table, name: str) -> list:
    return batch.column(name).to_pylist() if name in batch.column_names else [None] * len(batch)


def _retried(rows: pa.Table, input_hash: str, policy: RetryPolicy) -> np.ndarray:
    """True where the latest outcome is an error that `policy` retries this run."""
    import pyarrow.compute as pc

    outcome = rows.column("outcome")
    error = pc.not_equal(outcome, OK)
    retry = rows.column("transient")
    if policy.all:
        retry = pc.or_(retry, error)
    elif policy.codes:
        retry = pc.or_(retry, pc.is_in(outcome, pa.array(sorted(policy.codes))))
    stale = pc.not_equal(rows.column("input_hash"), input_hash)
    retry = pc.or_(retry, pc.and_(rows.column("shard_level"), stale))
    return _mask(pc.and_(error, retry))


def _of_sources(sources: pa.ChunkedArray, chosen: frozenset[str]) -> np.ndarray:
    if not chosen or not len(sources):
        return np.zeros(len(sources), dtype=bool)
    import pyarrow.compute as pc

    return _mask(pc.is_in(sources, pa.array(sorted(chosen))))


def _mask(values) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def _latest(table: pa.Table | None) -> dict[str, tuple[pa.Table, np.ndarray]]:
    """task -> (the latest record per item, by run id, which starts with its time; its item
    ids as fixed-width bytes). Columns stay Arrow: no Python object per record."""
    if table is None or table.num_rows == 0:
        return {}
    import pyarrow.compute as pc

    names = ["item_id", "run_id", "outcome", "transient", "shard_level", "input_hash", "source_uri"]
    tasks = pc.unique(table.column("task")).to_pylist()
    out = {}
    for name in tasks:
        sub = table if len(tasks) == 1 else table.filter(pc.equal(table.column("task"), name))
        sub = sub.select(names)
        keys = _decoded(sub.select(["item_id", "run_id"]), "run_id")
        order = pc.sort_indices(keys, sort_keys=[("item_id", "ascending"), ("run_id", "ascending")])
        del keys
        item = _fixed(sub.column("item_id").take(order))
        last = np.ones(len(item), dtype=bool)
        last[:-1] = item[1:] != item[:-1]
        picked = sub.take(order.filter(pa.array(last)))  # one copy, of the latest rows only
        for column in ("run_id", "outcome", "input_hash"):
            picked = _decoded(picked, column)
        out[str(name)] = (picked, item[last])
    return out


def _decoded(table: pa.Table, name: str) -> pa.Table:
    """`table` with its dictionary-encoded column `name` as plain values (for sorting)."""
    i = table.schema.get_field_index(name)
    column = table.column(i)
    if not pa.types.is_dictionary(column.type):
        return table
    return table.set_column(i, name, column.cast(column.type.value_type))


def _fixed(column: pa.ChunkedArray) -> np.ndarray:
    """A string column as NumPy fixed-width bytes (the IdSet's form). Ids of one length
    (the derived ones: 24 hex digits) are viewed straight from Arrow's buffer."""
    import pyarrow.compute as pc

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) and array.null_count == 0:
        lengths = pc.min_max(pc.binary_length(array)).as_py()
        width = lengths["min"]
        if width and width == lengths["max"] and array.type == pa.string():
            offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)
            start = int(offsets[array.offset])
            data = array.buffers()[2].to_pybytes()[start : start + width * len(array)]
            return np.frombuffer(data, dtype=f"S{width}").copy()
    return np.asarray(_plain(column), dtype="S")


def _plain(column: pa.ChunkedArray) -> np.ndarray:
    """A column as NumPy (dictionary-encoded ones decoded first)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.to_numpy(zero_copy_only=False)


def _read(fs, files: list[str]) -> pa.Table | None:
    """The records of `files`: the COMPLETION columns by name (null where a file predates
    a column; a newer writer's extra columns left out), the few-valued ones
    dictionary-encoded (planning's memory at 1M records), as one chunk per piece."""
    if not files:
        return None
    target = pa.schema(
        [
            f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in _DICTIONARY else f
            for f in COMPLETION
        ]
    )
    pieces = [_conformed(p, target) for p in _pieces(fs, files, every_column=False)]
    table = pa.concat_tables(pieces).unify_dictionaries()
    del pieces
    return table


def _pieces(fs, files: list[str], *, every_column: bool) -> Iterator[pa.Table]:
    """The records of `files`, in order, as tables of about `_PIECE_ROWS` rows (small
    files concatenated), each one chunk. Only the COMPLETION columns unless
    `every_column`; the few-valued ones dictionary-encoded unless `every_column` (merging
    writes plain columns)."""
    parts, rows = [], 0
    for part in _read_ahead(fs, files, every_column):
        parts.append(part)
        rows += part.num_rows
        if rows >= _PIECE_ROWS:
            yield _joined(parts)
            parts, rows = [], 0
    if parts:
        yield _joined(parts)


def _read_ahead(fs, files: list[str], every_column: bool) -> Iterator[pa.Table]:
    """Each row group of `files`, in order, the files read on Arrow's CPU count of threads
    (Parquet decoding lets go of the GIL), at most twice that many files ahead."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(pa.cpu_count(), 8))
    ahead = deque()
    with ThreadPoolExecutor(workers) as pool:
        for path in files:
            ahead.append(pool.submit(_read_file, fs, path, every_column))
            if len(ahead) > 2 * workers:
                yield from ahead.popleft().result()
        while ahead:
            yield from ahead.popleft().result()


def _read_file(fs, path: str, every_column: bool) -> list[pa.Table]:
    """One completion file, a table per row group (see `_pieces`)."""
    import pyarrow.parquet as pq

    dictionary = None if every_column else list(_DICTIONARY)
    with fs.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle, read_dictionary=dictionary)
        names = parquet.schema_arrow.names
        columns = names if every_column else [n for n in COMPLETION.names if n in names]
        return [
            parquet.read_row_group(g, columns=columns, use_threads=False)
            for g in range(parquet.num_row_groups)
        ]


def _joined(parts: list[pa.Table]) -> pa.Table:
    """Tables of (maybe) different columns as one, by name, in one chunk."""
    table = pa.concat_tables(parts, promote_options="permissive")
    return table.unify_dictionaries().combine_chunks()


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly the columns of `schema`, in its order and types (nulls for a
    column `table` lacks)."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _committed_bases(fs, checkpoint: str) -> set[str]:
    """Base names of the committed writes: `_checkpoint/<base>.parquet` (not `.pending`)."""
    from pipeline.io.tables import parquet_files

    return {_base(f) for f in parquet_files(fs, checkpoint) if not f.endswith(PENDING_SUFFIX)}


def _base(path: str) -> str:
    return posixpath.basename(path).removesuffix(".parquet")


def _legacy_ids(fs, root: str, checkpoint_dir: str, bases: set[str]) -> np.ndarray:
    """Item ids of committed writes that left no completion record (older outputs)."""
    import pyarrow.parquet as pq

    folder = posixpath.join(root, checkpoint_dir)
    chunks = [
        pq.read_table(posixpath.join(folder, f"{b}.parquet"), columns=["item_id"], filesystem=fs)
        .column("item_id")
        .to_pylist()
        for b in sorted(bases)
    ]
    ids = [i for c in chunks for i in c]
    return np.unique(np.array(ids, dtype="S")) if ids else np.array([], dtype="S1")
