"""The model-stage base with a fake adapter: lazy loading, checks, micro-batching by cost,
retrying alone, columns. (The kinds' reference-equality tests use real tiny checkpoints.)"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.columns import (
    AUDIO,
    ERROR_CODE,
    ERROR_MESSAGE,
    ERROR_STAGE,
    SAMPLE_RATE,
    audio_arrays,
    task_column,
)
from pipeline.kinds.ctc import CtcTaskSpec
from pipeline.models.base import ModelAdapter
from pipeline.spec import StorageOptions
from pipeline.stages.base import StageOutput
from pipeline.stages.batching import Batching, micro_batches
from pipeline.stages.model import ModelStage

RATE = 16_000


class FakeAdapter:
    """Returns each input's length; raises on any batch holding an input of 777 samples."""

    name = "fake/model"
    sampling_rate = RATE
    min_samples = 100

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def cost(self, samples: int) -> int:
        return samples

    def predict(self, batch: list[np.ndarray]) -> list[int]:
        self.batches.append([len(x) for x in batch])
        if any(len(x) == 777 for x in batch):
            raise RuntimeError("poisoned input")
        return [len(x) for x in batch]


class FakeStage(ModelStage):
    FIELDS = {"samples": pa.int64(), "model": pa.string()}
    too_short = "nothing to do"
    loads = 0

    def load_model(self, device: str) -> FakeAdapter:
        FakeStage.loads += 1
        return FakeAdapter()

    def setup(self) -> None:
        self.batching = Batching(budget=2_000)

    def process(self, rows: pa.Table) -> StageOutput:
        audio = audio_arrays(rows.column(AUDIO))[0]
        errors = self.checked(audio, rows.column(SAMPLE_RATE).to_pylist())
        ok = [i for i in range(len(audio)) if i not in errors]
        results = self.run_batched(
            [audio[i] for i in ok],
            self.model.predict,
            rows=ok,
            sizes=[len(audio[i]) for i in ok],
            batching=self.batching,
            errors=errors,
        )
        columns = self.empty_columns(len(audio))
        for i, n in zip(ok, results, strict=True):
            if i not in errors:
                self.put(columns, i, {"samples": n, "model": self.model.name})
        return StageOutput(columns=columns, errors=errors)


def _batch(lengths: list[int], rates: list[int] | None = None) -> pa.Table:
    n = len(lengths)
    return pa.table(
        {
            AUDIO: pa.array([[0.0] * k for k in lengths], pa.list_(pa.float32())),
            SAMPLE_RATE: pa.array(rates or [RATE] * n, pa.int32()),
            ERROR_STAGE: pa.nulls(n, pa.string()),
            ERROR_CODE: pa.nulls(n, pa.string()),
            ERROR_MESSAGE: pa.nulls(n, pa.string()),
        }
    )


def _stage() -> FakeStage:
    return FakeStage(CtcTaskSpec(model="fake/model", device="cpu", cpu_threads=1), StorageOptions())


def test_the_fake_is_a_model_adapter():
    assert isinstance(FakeAdapter(), ModelAdapter)
    assert not isinstance(object(), ModelAdapter)


def test_constructing_and_asking_columns_loads_nothing():
    before = FakeStage.loads
    stage = _stage()
    assert stage.reads() == (AUDIO, SAMPLE_RATE)
    assert stage.adds().names == ["ctc__samples", "ctc__model"]
    assert FakeStage.loads == before
    stage(_batch([200]))
    stage(_batch([300]))
    assert FakeStage.loads == before + 1  # once, on the first batch


def test_micro_batches_by_cost_and_a_failing_item_fails_alone():
    stage = _stage().load()
    lengths = [900, 200, 777, 300, 1_500, 50, 400]
    out = stage(_batch(lengths, rates=[RATE] * 6 + [8_000]))
    samples = out.column(task_column("ctc", "samples")).to_pylist()
    codes = out.column(task_column("ctc", "error_code")).to_pylist()
    messages = out.column(task_column("ctc", "error_message")).to_pylist()
    assert samples == [900, 200, None, 300, 1_500, None, None]
    assert codes == [None, None, "model_failed", None, None, "model_failed", "model_failed"]
    assert "fake/model raised on this item alone: RuntimeError: poisoned input" in messages[2]
    assert "fewer than the 100 fake/model needs: nothing to do" in messages[5]
    assert "8000 Hz" in messages[6]
    # Shortest first within 2,000 padded samples; the poisoned batch is retried one by one.
    assert stage.model.batches == [[200, 300], [777, 900], [777], [900], [1_500]]


def test_micro_batches_cap_items_and_keep_equal_lengths_in_order():
    assert micro_batches([5, 1, 5, 1, 5], budget=None, max_items=2) == [[1, 3], [0, 2], [4]]
    assert micro_batches([3, 3, 3], budget=6) == [[0, 1], [2]]
    assert micro_batches([10, 1], budget=4) == [[1], [0]]  # too long: a group of its own
