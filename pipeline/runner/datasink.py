"""A Ray Data file datasink that writes every output table from one stream of rows.

Ray's checkpointing (`DataContext.checkpoint_config`) gives `_FileDatasink`s a
two-phase commit: before a write task writes, it records the ids of its rows in a
pending checkpoint named after the task's base file name; after, it commits it.
On recovery, files whose names start with a pending checkpoint's base name are
deleted anywhere under the datasink's folder. So every file this sink writes, in
whichever table, starts with that base name. `_FileDatasink` is Ray-private;
Ray is pinned to 2.60 in pyproject.toml for that reason.
"""

from __future__ import annotations

import posixpath

from ray.data._internal.planner.plan_write_op import WRITE_UUID_KWARG_NAME
from ray.data.block import BlockAccessor
from ray.data.datasource.file_datasink import _FileDatasink
from ray.data.datasource.filename_provider import _split_base_and_ext

from pipeline.columns import ERROR_CODE, INPUT_BYTES, TASK_DONE, audio_seconds, task_column
from pipeline.io.completion import COMPLETION_DIR, completion_rows
from pipeline.io.storage import bounded
from pipeline.io.tables import TaskInfo, partition_dir, split_batch, write_parquet
from pipeline.schemas import TABLES


class TablesDatasink(_FileDatasink):
    def __init__(
        self,
        root: str,
        filesystem,
        *,
        tasks: list[TaskInfo],
        run_id: str,
        input_hash: str = "",
        progress=None,
        timeout_s: float | None = None,
    ):
        super().__init__(root, filesystem=filesystem, file_format="parquet")
        self._fs = filesystem  # the unwrapped one: write_parquet picks its strategy by type
        self._tasks = tasks
        self._run_id = run_id
        self._input_hash = input_hash
        self._progress = progress
        self._timeout_s = timeout_s  # object storage: a stalled write fails the task (and run)

    def write_block(self, block: BlockAccessor, block_index: int, ctx) -> None:
        filename = self.filename_provider.get_filename_for_task(
            ctx.kwargs[WRITE_UUID_KWARG_NAME], ctx.task_idx
        )
        base, _ = _split_base_and_ext(filename)
        batch = block.to_arrow()
        for (table, value), rows in split_batch(batch, self._tasks, self._run_id).items():
            folder = partition_dir(self.path, table, TABLES[table][1], value)
            self._write(posixpath.join(folder, f"{base}.parquet"), rows)
        # Under the same base name: committed, or cleaned up, together with the table files.
        names = [t.name for t in self._tasks]
        records = completion_rows(batch, names, self._run_id, self._input_hash)
        if records is not None:
            self._write(posixpath.join(self.path, COMPLETION_DIR, f"{base}.parquet"), records)
        if self._progress is not None:
            self._progress.written.remote(_written_stats(batch, [t.name for t in self._tasks]))

    def _write(self, path: str, rows) -> None:
        if self._timeout_s is None:
            write_parquet(self._fs, path, rows)
        else:  # a late write is harmless: this task's checkpoint stays pending, so
            # the next run deletes its files (module docstring)
            bounded(lambda: write_parquet(self._fs, path, rows), self._timeout_s, f"writing {path}")


def _written_stats(batch, tasks: list[str]) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc

    def count(mask) -> int:
        return int(pc.sum(mask.cast("int64")).as_py() or 0)

    # An item counts as failed when it failed as a whole or for any one task.
    item_failed = pc.is_valid(batch.column(ERROR_CODE))
    failed, per_task = item_failed, {}
    for name in tasks:
        column = task_column(name, ERROR_CODE)
        task_failed = item_failed
        if column in batch.column_names:
            task_failed = pc.or_(item_failed, pc.is_valid(batch.column(column)))
        pending = pa.array([True] * batch.num_rows)
        done = task_column(name, TASK_DONE)
        if done in batch.column_names:  # settled earlier: neither a row nor an error now
            pending = pc.invert(pc.fill_null(batch.column(done), False))
        task_failed = pc.and_(task_failed, pending)
        failed = pc.or_(failed, task_failed)
        bad = count(task_failed)
        per_task[name] = (count(pending) - bad, bad)
    return {
        "items": batch.num_rows,
        "failed": count(failed),
        "audio_s": audio_seconds(batch),
        "bytes": int(pc.sum(batch.column(INPUT_BYTES)).as_py() or 0),
        "tasks": per_task,
    }
