"""Turning finished batches into output-table files, and reading the tables back.

A finished batch has one row per item with the item columns, each task's
`{task}__*` columns and the error columns. `split_batch` cuts it into the
`transcripts` rows of each task and the `errors` rows; `write_parquet` writes one
file so that no reader ever sees half of it (local: a temporary name, then an
atomic rename; object storage: one PUT, visible only when complete).
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline import columns as C
from pipeline.contract import ROUNDTRIP
from pipeline.schemas import TABLES, conform


@dataclass(frozen=True)
class TaskInfo:
    """What the sink needs to know about one task: its name (partition), kind and model."""

    name: str
    kind: str
    model: str
    table: str = "transcripts"
    roundtrip: str | None = None  # syntheses: the ASR task whose transcript is copied in
    revision: str | None = None  # the model's resolved revision (pipeline/models/revision.py)


def split_batch(
    batch: pa.Table, tasks: list[TaskInfo], run_id: str
) -> dict[tuple[str, str], pa.Table]:
    """(table, partition value) -> rows conformed to that table's schema.

    A row-level failure (read, decode) is one `errors` row with a null `task`; a task's
    own failure is one `errors` row naming the task, and the other tasks still write
    the item. So each item is in each task's table or in `errors` for that task."""
    import pyarrow.compute as pc

    failed = pc.is_valid(batch.column(C.ERROR_CODE))
    parts: dict[tuple[str, str], list[pa.Table]] = {}
    _add_item_errors(parts, batch.filter(failed), tasks, run_id)
    good = batch.filter(pc.invert(failed))
    for task in tasks if good.num_rows else ():
        good_task = good
        done = C.task_column(task.name, C.TASK_DONE)
        if done in good.column_names:  # settled by an earlier run: no row for it
            good_task = good.filter(pc.invert(pc.fill_null(good.column(done), False)))
        _add_task_rows(parts, good_task, task, run_id)
    return {
        (table, value): conform(
            with_partition(pa.concat_tables(p, promote_options="none"), table, value), table
        )
        for (table, value), p in parts.items()
    }


def _add_item_errors(parts, bad: pa.Table, tasks: list[TaskInfo], run_id: str) -> None:
    """Read/decode failures: one row with a null task when every task was pending for the
    item, else one row per task still pending (the others were settled earlier)."""
    import pyarrow.compute as pc

    if not bad.num_rows:
        return
    flags = [C.task_column(t.name, C.TASK_DONE) for t in tasks]
    if not any(f in bad.column_names for f in flags):
        _add_errors(parts, bad, None, C.ERROR_COLUMNS, run_id)
        return
    done = {
        t.name: pc.fill_null(bad.column(f), False)
        if f in bad.column_names
        else pa.array([False] * bad.num_rows)
        for t, f in zip(tasks, flags, strict=True)
    }
    some = done[tasks[0].name]
    for t in tasks[1:]:
        some = pc.or_(some, done[t.name])
    if pc.any(pc.invert(some)).as_py():
        _add_errors(parts, bad.filter(pc.invert(some)), None, C.ERROR_COLUMNS, run_id)
    partial = bad.filter(some)
    for t in tasks if partial.num_rows else ():
        pending = partial.filter(pc.invert(done[t.name].filter(some)))
        if pending.num_rows:
            _add_errors(parts, pending, t.name, C.ERROR_COLUMNS, run_id)


def _add_task_rows(parts, good: pa.Table, task: TaskInfo, run_id: str) -> None:
    import pyarrow.compute as pc

    if not good.num_rows:
        return
    code = C.task_column(task.name, C.ERROR_CODE)
    task_failed = (
        pc.is_valid(good.column(code))
        if code in good.column_names
        else pa.array([False] * good.num_rows)
    )
    if pc.any(task_failed).as_py():
        names = tuple(C.task_column(task.name, c) for c in C.ERROR_COLUMNS)
        _add_errors(parts, good.filter(task_failed), task.name, names, run_id)
    ok = good.filter(pc.invert(task_failed))
    if ok.num_rows:
        parts[(task.table, task.name)] = [_task_rows(ok, task, run_id)]


def _add_errors(parts, rows: pa.Table, task: str | None, names, run_id: str) -> None:
    import pyarrow.compute as pc

    stage_col, code_col, message_col = names
    errors = pa.table(
        {
            **{c: rows.column(c) for c in (C.ITEM_ID, C.SOURCE_URI, C.MEMBER, C.SHARD)},
            "task": pa.array([task] * rows.num_rows, pa.string()),
            "stage": rows.column(stage_col),
            "error_code": rows.column(code_col),
            "error_message": rows.column(message_col),
            "run_id": pa.array([run_id] * rows.num_rows, pa.string()),
            "metadata": rows.column(C.METADATA)
            if C.METADATA in rows.column_names
            else pa.nulls(rows.num_rows, pa.string()),
        }
    )
    for stage in pc.unique(errors.column("stage")).to_pylist():
        part = conform(errors.filter(pc.equal(errors.column("stage"), stage)), "errors")
        parts.setdefault(("errors", stage), []).append(part)


def _task_rows(good: pa.Table, task: TaskInfo, run_id: str) -> pa.Table:
    prefix = f"{task.name}__"
    table = _with_run(good, run_id)
    if task.roundtrip:
        table = _with_roundtrip(table, task)
    renamed = {c: c[len(prefix) :] for c in table.column_names if c.startswith(prefix)}
    errors = {*C.ERROR_COLUMNS, *(prefix + c for c in C.ERROR_COLUMNS)}
    # A task's own column wins over an item column of the same name (e.g. `text`).
    shadowed = errors | set(renamed.values())
    keep = [c for c in table.column_names if c in renamed or ("__" not in c and c not in shadowed)]
    table = table.select(keep)
    table = table.rename_columns([renamed.get(c, c) for c in table.column_names])
    if "model" not in table.column_names:
        table = table.append_column("model", pa.array([task.model] * table.num_rows, pa.string()))
    revision = pa.array([task.revision] * table.num_rows, pa.string())
    table = table.append_column("model_revision", revision)
    # Columns a task kind does not produce (e.g. `language` for CTC) are written as nulls.
    for f in TABLES[task.table][0]:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table


def _with_roundtrip(table: pa.Table, task: TaskInfo) -> pa.Table:
    """Copy the round-trip ASR task's transcript and scores in, under the synthesis prefix.

    Where that task failed on the item, its columns are null here (its own error row says why).
    """
    import pyarrow.compute as pc

    asr = task.roundtrip or ""
    code = C.task_column(asr, C.ERROR_CODE)
    failed = pc.is_valid(table.column(code)) if code in table.column_names else None
    table = table.append_column(
        C.task_column(task.name, "roundtrip_task"), pa.array([asr] * table.num_rows, pa.string())
    )
    for source, target in ROUNDTRIP.items():
        name = C.task_column(asr, source)
        if name not in table.column_names:
            continue
        values = table.column(name)
        if failed is not None:
            values = pc.if_else(failed, pa.nulls(table.num_rows, values.type), values)
        table = table.append_column(C.task_column(task.name, target), values)
    return table


def _with_run(table: pa.Table, run_id: str) -> pa.Table:
    return table.append_column("run_id", pa.array([run_id] * table.num_rows, pa.string()))


def partition_value(value: str) -> str:
    """`value` made safe for a path segment: what the folder name and the file both hold."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in value) or "_"


def partition_dir(root: str, table: str, key: str, value: str) -> str:
    """`root/table/key=value`, with the value made safe for a path segment."""
    return posixpath.join(root, table, f"{key}={partition_value(value)}")


def with_partition(rows: pa.Table, table: str, value: str) -> pa.Table:
    """`rows` with the table's partition column set to the folder's value (`partition_value`):
    Hive-aware readers take the folder's, so the file must not say anything else."""
    key = TABLES[table][1]
    column = pa.array([partition_value(value)] * rows.num_rows, pa.string())
    if key in rows.column_names:
        return rows.set_column(rows.column_names.index(key), key, column)
    return rows.append_column(key, column)


def write_parquet(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """Write `table` to `path` so that readers see all of it or nothing."""
    parent = posixpath.dirname(path)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(parent, recursive=True)
        tmp = _temp_name(path)
        pq.write_table(table, tmp, filesystem=fs, compression="zstd")
        fs.move(tmp, path)
    else:
        pq.write_table(table, path, filesystem=fs, compression="zstd")


def _temp_name(path: str) -> str:
    """Where a local file is written before it is renamed to `path`. The name starts with
    the final name, so Ray's orphan clean-up (prefix match) also removes a temp left by a
    crash; readers glob `*.parquet` and skip it."""
    return f"{path}.{uuid.uuid4().hex[:8]}.tmp"


class ParquetStream:
    """One Parquet file written table by table, seen by readers all or not at all, as
    `write_parquet` writes it: local, under a temporary name renamed at `close`; object
    storage, into memory (the compressed file only) and one PUT at `close`. `abort`
    leaves no file under the name."""

    def __init__(self, fs: pafs.FileSystem, path: str, schema: pa.Schema):
        self.fs, self.path, self.schema = fs, path, schema
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(posixpath.dirname(path), recursive=True)
            self._tmp = _temp_name(path)
            self._sink = fs.open_output_stream(self._tmp)
        else:
            self._tmp, self._sink = None, pa.BufferOutputStream()
        self._writer = pq.ParquetWriter(self._sink, schema, compression="zstd")
        self._done = False

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._done = True
        self._writer.close()
        if self._tmp is not None:
            self._sink.close()
            self.fs.move(self._tmp, self.path)
        else:
            data = self._sink.getvalue()
            with self.fs.open_output_stream(self.path) as out:
                out.write(data)

    def abort(self) -> None:
        if self._done:  # closed (visible) or aborted already
            return
        self._done = True
        try:
            self._writer.close()
        finally:
            if self._tmp is not None:
                self._sink.close()
                self.fs.delete_file(self._tmp)


def read_table(fs: pafs.FileSystem, root: str, table: str) -> pa.Table | None:
    """Read one output table (all partitions) or None if nothing was written yet."""
    import pyarrow.dataset as ds

    base = posixpath.join(root, table)
    files = visible_files(fs, root, table)
    if not files:
        return None
    schema, key = TABLES[table]
    part = ds.partitioning(pa.schema([(key, pa.string())]), flavor="hive")
    # The declared schema, not the first file's: files written before a nullable column
    # was added read back with nulls in it instead of hiding it from the newer files.
    declared = _nullable(schema)
    if key not in declared.names:  # the partition column, also written into the files
        declared = declared.append(pa.field(key, pa.string()))
    dataset = ds.dataset(
        files,
        schema=declared,
        filesystem=fs,
        format="parquet",
        partitioning=part,
        partition_base_dir=base,
    )
    return dataset.to_table()


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


def visible_files(fs: pafs.FileSystem, root: str, table: str) -> list[str]:
    """Every Parquet file of `table` a reader reads: the table's compaction manifest is read
    first, then the folder listed (pipeline/io/compacted.py says why in that order)."""
    from pipeline.io.compacted import published, relative

    state = published(fs, root, table)
    base = posixpath.join(root, table)
    return [f for f in parquet_files(fs, base) if state.visible(relative(base, f))]


def parquet_files(fs: pafs.FileSystem, base: str) -> list[str]:
    """Every `*.parquet` file under `base` (recursively); empty if `base` does not exist.

    Temporary files (`*.parquet.<id>.tmp`) of writes in flight are not listed."""
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return [f.path for f in infos if f.type == pafs.FileType.File and f.path.endswith(".parquet")]
