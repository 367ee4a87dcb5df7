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
done ids are NumPy fixed-width bytes; no Python object per record.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
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
    crash in between leaves duplicate records, which `_latest` reads as one. Every column
    of every file is kept, by name (a newer writer's extra columns are nulls in older
    records). Called by the lease holder only: the planner, and `audiobatch compact`."""
    from pipeline.io.tables import write_parquet

    table = _read(fs, list(files), every_column=True)
    if table is None:
        return 0
    base = f"compacted-{run_id}"
    write_parquet(fs, posixpath.join(root, COMPLETION_DIR, f"{base}.parquet"), table)
    checkpoint = posixpath.join(root, checkpoint_dir)
    ids = pa.table({"item_id": table.column("item_id")})
    write_parquet(fs, posixpath.join(checkpoint, f"{base}.parquet"), ids)
    for f in files:
        fs.delete_file(f)
        marker = posixpath.join(checkpoint, f"{_base(f)}.parquet")
        if fs.get_file_info(marker).type == pafs.FileType.File:
            fs.delete_file(marker)
    return len(files)


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


def _read(fs, files: list[str], *, every_column: bool = False) -> pa.Table | None:
    """The records of `files`: the COMPLETION columns, the few-valued ones read
    dictionary-encoded (planning's memory at 1M records); or, with `every_column` (for
    merging), the union of every file's columns by name, as plain columns."""
    if not files:
        return None
    import pyarrow.dataset as ds

    if every_column:
        import pyarrow.parquet as pq

        physical = [pq.read_schema(f, filesystem=fs) for f in files]
        schema = pa.unify_schemas([COMPLETION, *physical], promote_options="permissive")
        return ds.dataset(files, schema=schema, filesystem=fs, format="parquet").to_table()
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=_DICTIONARY))
    schema = pa.schema(
        [
            f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in _DICTIONARY else f
            for f in COMPLETION
        ]
    )
    return ds.dataset(files, schema=schema, filesystem=fs, format=fmt).to_table()


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
