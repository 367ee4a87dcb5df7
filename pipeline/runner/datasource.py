"""A Ray Data datasource over the work units of an `InputPlan`.

Each read task reads one work unit (a group of files, one tar, one Parquet file)
and yields item rows with a stable `item_id`, the id Ray's checkpoint writer records.
Ids already written by an earlier run are skipped here (see runner/checkpoint.py); rows
carry their tasks settled earlier (`{task}__done`) and what their source looked like when
listed (`source_size`, `source_version`, kept in the completion records).
"""

from __future__ import annotations

import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from pipeline.io.completion import Completion, mark_done, mark_sources
from pipeline.io.formats import FORMATS
from pipeline.io.reading import read_unit
from pipeline.io.units import InputPlan, WorkUnit
from pipeline.spec import InputSpec

_DONE_CACHE: dict[str, Completion] = {}


def _done_ids(ref) -> Completion:
    """What earlier runs settled, fetched once per worker process (it can be large)."""
    key = ref.hex()
    if key not in _DONE_CACHE:
        _DONE_CACHE.clear()
        _DONE_CACHE[key] = ray.get(ref)
    return _DONE_CACHE[key]


class AudioShardDatasource(Datasource):
    def __init__(
        self, plan: InputPlan, spec: InputSpec, max_bytes: int, batch_items: int, done_ref
    ):
        self._done_ref = done_ref
        self._plan = plan
        self._spec = spec
        self._max_bytes = max_bytes
        self._batch = batch_items

    def get_name(self) -> str:
        return f"AudioShards[{self._plan.format}]"

    def estimate_inmemory_data_size(self) -> int | None:
        return self._plan.total_bytes or None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context=None
    ) -> list[ReadTask]:
        return [self._task(unit) for unit in self._plan.units]

    def _task(self, unit: WorkUnit) -> ReadTask:
        spec, max_bytes, batch, done_ref = self._spec, self._max_bytes, self._batch, self._done_ref

        def read():
            done = _done_ids(done_ref)
            for table in read_unit(unit, spec, max_bytes, batch, done.done_all):
                yield mark_done(mark_sources(table, unit), done.done)

        inputs = tuple(f.uri for f in unit.files) if unit.files else (unit.shard_uri,)
        meta = BlockMetadata(
            num_rows=unit.num_items,
            size_bytes=unit.size or None,
            exec_stats=None,
            input_files=inputs,
        )
        return ReadTask(read, meta, schema=FORMATS[unit.format].schema)
