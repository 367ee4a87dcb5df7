"""The stage contract every pipeline step follows.

A stage takes a `pyarrow.Table` batch and returns it with its columns added,
exactly one output row per input row. Rows that already carry an error pass
through untouched; rows that fail here get `error_stage/error_code/error_message`
filled and flow on. Subclasses implement `process` over the healthy rows only;
the base class does the bookkeeping, so a stage can be unit-tested with no Ray.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.columns import ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE
from pipeline.errors import RowError


@dataclass(frozen=True)
class Resources:
    """What one copy of a stage needs from the cluster.

    `actor` stages load something once (a model) and run as a Ray Data actor pool;
    the others run as stateless tasks. `num_gpus` may be a fraction for small models.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    actor: bool = False
    max_actors: int = 1


@dataclass
class StageOutput:
    """What `process` returns for the healthy rows it was given (same order).

    `columns` maps each added column to a list (or Arrow array) of one value per
    row, `None` where the row failed; `errors` maps a row's position to its error.
    """

    columns: dict[str, pa.Array | list] = field(default_factory=dict)
    errors: dict[int, RowError] = field(default_factory=dict)


class Stage(ABC):
    """Base of all stages. `name` is what `error_stage` says when a row fails here."""

    name: str = "stage"

    @abstractmethod
    def reads(self) -> Sequence[str]:
        """The columns this stage needs."""

    @abstractmethod
    def adds(self) -> pa.Schema:
        """The columns this stage adds (their names and types)."""

    def drops(self) -> Sequence[str]:
        """Columns this stage removes once it has used them (e.g. raw bytes)."""
        return ()

    @abstractmethod
    def process(self, rows: pa.Table) -> StageOutput:
        """Work on healthy rows only; never raise for one bad row, record it."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        healthy = healthy_mask(batch)
        idx = np.flatnonzero(healthy)
        out = self.process(batch.take(pa.array(idx, pa.int64()))) if len(idx) else StageOutput()

        # Map every row of the batch to its position among the healthy rows (null if
        # it was already errored), so `take` scatters the stage's values back.
        position = np.zeros(n, dtype=np.int64)
        position[idx] = np.arange(len(idx))
        mapping = pa.array(position, mask=~healthy)

        for fld in self.adds():
            values = out.columns.get(fld.name)
            if values is None:
                values = [None] * len(idx)
            arr = (
                values
                if isinstance(values, pa.Array | pa.ChunkedArray)
                else pa.array(values, type=fld.type)
            )
            if len(arr) != len(idx):
                raise RuntimeError(
                    f"stage {self.name} returned {len(arr)} values for {fld.name}, "
                    f"expected {len(idx)}: a stage must return one value per row"
                )
            full = arr.take(mapping) if len(idx) else pa.nulls(n, fld.type)
            batch = _set_column(batch, fld.name, full.cast(fld.type))

        if out.errors:
            batch = _record_errors(
                batch, self.name, {int(idx[j]): e for j, e in out.errors.items()}
            )
        drop = [c for c in self.drops() if c in batch.column_names]
        return batch.drop_columns(drop) if drop else batch


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def _record_errors(table: pa.Table, stage: str, errors: dict[int, RowError]) -> pa.Table:
    stages = table.column(ERROR_STAGE).to_pylist()
    codes = table.column(ERROR_CODE).to_pylist()
    messages = table.column(ERROR_MESSAGE).to_pylist()
    for i, err in errors.items():
        stages[i], codes[i], messages[i] = stage, str(err.code), err.message
    for name, values in ((ERROR_STAGE, stages), (ERROR_CODE, codes), (ERROR_MESSAGE, messages)):
        table = _set_column(table, name, pa.array(values, pa.string()))
    return table


def healthy_mask(batch: pa.Table) -> np.ndarray:
    """True for rows with no error so far."""
    return np.asarray(pc.is_null(batch.column(ERROR_CODE)).to_numpy(zero_copy_only=False))
