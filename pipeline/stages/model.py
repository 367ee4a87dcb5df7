"""The base of every model stage: one task, one model behind `models.base.ModelAdapter`.

`ModelStage` owns what every kind did for itself before:
- setup: the model is loaded once, lazily (`load()`, which the runner calls when it
  builds an actor; constructing a stage for planning loads nothing), after the device
  is picked and CPU threads are set; `setup()` then derives the kind's settings;
- input checks: audio at the model's rate and at least `min_samples` long;
- micro-batching: items sorted by cost and cut by a budget (`stages/batching.py`), and
  the single retry-alone path when a micro-batch raises;
- output columns: `FIELDS` names the task's columns; `empty_columns` and `put` fill them.

A kind supplies `load_model(device)` (its adapter), `setup()`, and `process` mapping
the adapter's results to its fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from pipeline.columns import task_column
from pipeline.contract import MODEL_STAGES
from pipeline.errors import RowError
from pipeline.models.base import ModelAdapter
from pipeline.models.device import configure_threads, pick_device
from pipeline.spec import StorageOptions
from pipeline.stages.base import Stage, check_audio
from pipeline.stages.batching import Batching, run_batched


class ModelStage(Stage):
    """A task's model stage. Subclasses set `FIELDS` and implement `load_model`/`process`."""

    FIELDS: ClassVar[dict[str, pa.DataType]] = {}  # the task's output fields and types
    too_short: str = "it is too short for the model"  # why a short item fails, for messages

    def __init__(self, spec: Any, storage: StorageOptions) -> None:
        self.spec = spec
        self.storage = storage
        self.name = self.task = spec.task_name
        self.device: str | None = None
        self._model: Any = None

    def load_model(self, device: str) -> ModelAdapter:
        """Load this task's model on `device` (called once)."""
        raise NotImplementedError

    def setup(self) -> None:
        """Derive settings from the loaded model (window sizes, budgets); raise
        ModelLoadError for a spec the model cannot serve."""

    def load(self) -> ModelStage:
        """Load the model (once) and set the stage up; returns the stage."""
        if self._model is None:
            device = pick_device(self.spec.device)
            configure_threads(device, self.spec.cpu_threads)
            self._model = self.load_model(device)
            self.device = device
            self.setup()
        return self

    @property
    def model(self) -> Any:
        return self.load()._model

    def reads(self) -> Sequence[str]:
        return MODEL_STAGES[self.spec.kind].reads

    def adds(self) -> pa.Schema:
        return pa.schema([pa.field(task_column(self.name, f), t) for f, t in self.FIELDS.items()])

    def check(self, x: np.ndarray | None, rate: int | None) -> RowError | None:
        """The row's error when its audio is at another rate than the model's or too short."""
        m = self.model
        return check_audio(
            x,
            rate,
            expected_rate=m.sampling_rate,
            min_samples=m.min_samples,
            model=m.name,
            too_short=self.too_short,
        )

    def checked(self, audio: Sequence, rates: Sequence) -> dict[int, RowError]:
        """Row -> error for the rows `check` refuses."""
        checks = (self.check(x, r) for x, r in zip(audio, rates, strict=True))
        return {i: e for i, e in enumerate(checks) if e is not None}

    def empty_columns(self, n: int) -> dict[str, list]:
        """Every added column, all None, for `n` rows."""
        return {f.name: [None] * n for f in self.adds()}

    def put(self, columns: dict[str, list], row: int, values: dict[str, Any]) -> None:
        """Write one row's results (field -> value) into this task's columns."""
        for field, value in values.items():
            columns[task_column(self.name, field)][row] = value

    def run_batched(
        self,
        items: Sequence,
        predict: Callable[[list], Sequence[Any]],
        *,
        rows: Sequence[int],
        sizes: Sequence[int],
        batching: Batching,
        errors: dict[int, RowError],
    ) -> list[Any | None]:
        """`predict` over `items` in micro-batches, retrying alone (see `batching.run_batched`)."""
        return run_batched(
            items,
            predict,
            rows=rows,
            sizes=sizes,
            batching=batching,
            errors=errors,
            model_name=self.model.name,
            stage_name=self.name,
        )
