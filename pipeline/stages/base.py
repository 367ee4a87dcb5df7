"""The stage contract every pipeline step follows.

A stage takes a `pyarrow.Table` batch and returns it with its columns added,
exactly one output row per input row. Rows that already carry an error pass
through untouched; rows that fail here get `error_stage/error_code/error_message`
filled and flow on. Subclasses implement `process` over the healthy rows only;
the base class does the bookkeeping, so a stage can be unit-tested with no Ray.

A model stage belongs to one task (`task` set): its failures are that task's only,
recorded in `{task}__error_*` columns, so the other tasks of a job still write the
item (a Whisper failure does not cost the CTC transcript of the same audio). Read
and decode failures use the row-level `error_*` columns and stop every task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.columns import ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, TASK_DONE, task_column
from pipeline.errors import ErrorCode, RowError


@dataclass
class StageOutput:
    """What `process` returns for the healthy rows it was given (same order).

    `columns` maps each added column to a list (or Arrow array) of one value per
    row, `None` where the row failed; `errors` maps a row's position to its error.
    """

    columns: dict[str, pa.Array | list] = field(default_factory=dict)
    errors: dict[int, RowError] = field(default_factory=dict)
    # Failures of one task only, for stages that serve several tasks (scoring).
    task_errors: dict[str, dict[int, RowError]] = field(default_factory=dict)


def error_columns(task: str | None) -> tuple[str, str, str]:
    """(stage, code, message) columns: the row-level ones, or those of one task."""
    if task is None:
        return ERROR_STAGE, ERROR_CODE, ERROR_MESSAGE
    return tuple(task_column(task, c) for c in (ERROR_STAGE, ERROR_CODE, ERROR_MESSAGE))  # type: ignore[return-value]


class Stage(ABC):
    """Base of all stages. `name` is what `error_stage` says when a row fails here;
    `task`, when set, scopes this stage's failures to that task (see the module doc)."""

    name: str = "stage"
    task: str | None = None

    @abstractmethod
    def reads(self) -> Sequence[str]:
        """The columns this stage needs."""

    @abstractmethod
    def adds(self) -> pa.Schema:
        """The columns this stage adds (their names and types)."""

    def load(self) -> Stage:
        """Load what the stage needs before its first batch (a model); returns the stage.

        Constructing a stage loads nothing, so a plan can build stages to ask their
        columns; the runner calls `load` where the stage runs."""
        return self

    def drops(self) -> Sequence[str]:
        """Columns this stage removes once it has used them (e.g. raw bytes)."""
        return ()

    @abstractmethod
    def process(self, rows: pa.Table) -> StageOutput:
        """Work on healthy rows only; never raise for one bad row, record it."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        for t in {self.task, *self.error_tasks()} - {None}:
            batch = _ensure_error_columns(batch, t)
        healthy = healthy_mask(batch, self.task)
        idx = np.flatnonzero(healthy)
        # `take` copies every column (audio included: 0.65 s for 256 x 30 s); skip it in
        # the usual case of a batch with no failed rows.
        rows = batch if len(idx) == n else batch.take(pa.array(idx, pa.int64()))
        out = self.process(rows) if len(idx) else StageOutput()

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
            if len(idx) == n:
                full = arr
            else:
                full = arr.take(mapping) if len(idx) else pa.nulls(n, fld.type)
            batch = _set_column(batch, fld.name, full.cast(fld.type))

        scoped = {self.task: out.errors, **out.task_errors}
        for task, errors in scoped.items():
            if errors:
                at = {int(idx[j]): e for j, e in errors.items()}
                batch = _record_errors(batch, self.name, at, task)
        drop = [c for c in self.drops() if c in batch.column_names]
        return batch.drop_columns(drop) if drop else batch

    def calls(self, batch: pa.Table) -> Iterator[pa.Table]:
        """The runner's entry: this stage applied to `batch`, as one or more blocks in row
        order. One block by default; a stage whose output can dwarf its input cuts it."""
        yield self(batch)

    def error_tasks(self) -> Sequence[str]:
        """Tasks this stage may record `task_errors` for (besides its own `task`)."""
        return ()


def _ensure_error_columns(table: pa.Table, task: str) -> pa.Table:
    for name in error_columns(task):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def _record_errors(
    table: pa.Table, stage: str, errors: dict[int, RowError], task: str | None
) -> pa.Table:
    names = error_columns(task)
    stages, codes, messages = (table.column(c).to_pylist() for c in names)
    for i, err in errors.items():
        stages[i], codes[i], messages[i] = stage, str(err.code), err.message
    for name, values in zip(names, (stages, codes, messages), strict=True):
        table = _set_column(table, name, pa.array(values, pa.string()))
    return table


def healthy_mask(batch: pa.Table, task: str | None = None) -> np.ndarray:
    """True for rows with no row-level error so far (and, given a task, none of that task
    and not already done for it by an earlier run)."""
    ok = pc.is_null(batch.column(ERROR_CODE))
    code = error_columns(task)[1]
    if task is not None and code in batch.column_names:
        ok = pc.and_(ok, pc.is_null(batch.column(code)))
    done = task_column(task, TASK_DONE) if task is not None else None
    if done in batch.column_names:  # settled by an earlier run: nothing to do for this task
        ok = pc.and_(ok, pc.invert(pc.fill_null(batch.column(done), False)))
    return np.asarray(ok.to_numpy(zero_copy_only=False))


def check_audio(
    x: np.ndarray | None,
    rate: int | None,
    *,
    expected_rate: int,
    min_samples: int,
    model: str,
    too_short: str,
) -> RowError | None:
    """The row error of a model stage's input: audio at another rate than the model's, or
    fewer than `min_samples` samples (`too_short` says what that means for this model)."""
    if rate != expected_rate:
        return RowError(
            ErrorCode.MODEL_FAILED,
            f"audio is at {rate} Hz but {model} expects {expected_rate} Hz; "
            f"set the task's sample_rate to {expected_rate} so decode resamples to it",
        )
    n = 0 if x is None else len(x)
    if n < min_samples:
        return RowError(
            ErrorCode.MODEL_FAILED,
            f"audio has {n} samples ({1000 * n / expected_rate:.1f} ms), fewer than the "
            f"{min_samples} {model} needs: {too_short}",
        )
    return None
