"""Decode stage: audio bytes in, mono float32 at the model's rate out.

Runs as plain CPU tasks. Each row is decoded on its own, so one bad file only
ever fails its own row: known problems carry their `ErrorCode`, anything else a
decoder raises becomes UNDECODABLE with the exception named. The raw bytes are
dropped here; nothing downstream needs them and they are the biggest column.

Decoded audio can be thousands of times its encoded size (a 7 KB WAV at 1 Hz
declaring an hour is 220 MiB at 16 kHz), so a batch is decoded row by row and cut
into blocks of at most `decode.max_batch_mb` of samples (`calls`): no batch of
small hostile files can exhaust a decode worker's memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from pipeline.columns import (
    AUDIO,
    AUDIO_BYTES,
    AUDIO_FIELDS,
    CHANNELS,
    DURATION_S,
    END_S,
    MEMBER,
    SAMPLE_RATE,
    SPAN_CUT,
    START_S,
)
from pipeline.contract import decode_columns
from pipeline.errors import AudioDecodeError, ErrorCode, RowError
from pipeline.io.audio import Span, decode_audio
from pipeline.spec import DecodeSpec
from pipeline.stages.base import Stage, StageOutput, healthy_mask

_MAX_LIST_VALUES = 2**31 - 1  # list<float32> has int32 offsets


class DecodeStage(Stage):
    """Decode `audio_bytes` into the `audio`, `sample_rate` and `duration_s` columns."""

    name = "decode"

    def __init__(self, limits: DecodeSpec, target_rate: int):
        self.limits = limits
        self.target_rate = target_rate
        self._decoded: list[np.ndarray | RowError] | None = None  # set by `calls` for `process`

    def reads(self) -> Sequence[str]:
        return decode_columns().reads

    def adds(self) -> pa.Schema:
        return pa.schema(AUDIO_FIELDS)

    def drops(self) -> Sequence[str]:
        return decode_columns().drops

    def calls(self, batch: pa.Table) -> Iterator[pa.Table]:
        """Decode `batch` row by row, yielding a block of rows each time their decoded audio
        reaches `decode.max_batch_mb` (and the rest at the end)."""
        if batch.num_rows == 0:
            yield self(batch)
            return
        budget = self.limits.max_batch_mb * 2**20
        healthy = healthy_mask(batch)
        data, names, spans = batch.column(AUDIO_BYTES), _names(batch), _spans(batch)
        start, held, held_bytes = 0, [], 0
        for i in range(batch.num_rows):
            if healthy[i]:
                result = self._decode_one(data[i].as_py(), names[i] or "", spans[i])
                held.append(result)
                held_bytes += 0 if isinstance(result, RowError) else result.nbytes
            if held_bytes >= budget or i == batch.num_rows - 1:
                self._decoded = held  # `process` takes these instead of decoding again
                try:
                    yield self(batch.slice(start, i + 1 - start))
                finally:
                    self._decoded = None
                start, held, held_bytes = i + 1, [], 0

    def process(self, rows: pa.Table) -> StageOutput:
        decoded = self._decoded
        if decoded is None or len(decoded) != rows.num_rows:
            decoded = [
                self._decode_one(data, name or "", span)
                for data, name, span in zip(
                    rows.column(AUDIO_BYTES).to_pylist(), _names(rows), _spans(rows), strict=True
                )
            ]
        samples: list[np.ndarray | None] = []
        errors: dict[int, RowError] = {}
        for i, result in enumerate(decoded):
            if isinstance(result, RowError):
                errors[i] = result
                samples.append(None)
            else:
                samples.append(result)
        durations = [None if x is None else len(x) / self.target_rate for x in samples]
        rates = [None if x is None else self.target_rate for x in samples]
        return StageOutput(
            columns={
                AUDIO: _list_array(samples),
                SAMPLE_RATE: pa.array(rates, pa.int32()),
                DURATION_S: pa.array(durations, pa.float64()),
            },
            errors=errors,
        )

    def _decode_one(
        self, data: bytes | None, name: str, span: Span | None = None
    ) -> np.ndarray | RowError:
        if data is None:
            return RowError(
                ErrorCode.MISSING_AUDIO, f"{name or 'item'}: the row has no audio bytes"
            )
        try:
            spanned = {"span": span} if span is not None else {}
            return decode_audio(
                data, target_rate=self.target_rate, limits=self.limits, name=name, **spanned
            ).samples
        except AudioDecodeError as exc:
            return exc.as_row_error()
        except Exception as exc:  # a decoder bug must cost one row, never the batch
            return RowError(
                ErrorCode.UNDECODABLE,
                f"{name or 'item'}: decoder raised {type(exc).__name__}: {exc}",
            )


def _names(rows: pa.Table) -> list[str | None]:
    """Member keys, for error messages ("" when the rows have none)."""
    if MEMBER in rows.column_names:
        return rows.column(MEMBER).to_pylist()
    return [""] * rows.num_rows


def _spans(rows: pa.Table) -> list[Span | None]:
    """Each row's segment of its file and channels (None: the whole file, downmixed); a span
    the read step already cut out (`span_cut`) is read whole, its channels kept."""
    starts, ends, channels, cut = (
        rows.column(c).to_pylist() if c in rows.column_names else [None] * rows.num_rows
        for c in (START_S, END_S, CHANNELS, SPAN_CUT)
    )
    spans = []
    for s, e, c, was_cut in zip(starts, ends, channels, cut, strict=True):
        if was_cut:
            s, e = None, None
        spans.append(
            None if s is None and c is None else Span(s or 0.0, e, None if c is None else tuple(c))
        )
    return spans


def _list_array(samples: list[np.ndarray | None]) -> pa.Array:
    """One list<float32> array over a single concatenated buffer; None rows are null."""
    lengths = np.array([0 if x is None else len(x) for x in samples], dtype=np.int64)
    if lengths.sum() > _MAX_LIST_VALUES:
        raise ValueError(
            f"a decode batch of {len(samples)} items holds {lengths.sum()} samples, more than an "
            "Arrow list column can (2^31 - 1): lower runtime.decode_batch_size or decode.max_duration_s"
        )
    offsets = np.zeros(len(samples) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    parts = [x for x in samples if x is not None]
    values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    mask = pa.array([x is None for x in samples], pa.bool_())
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(values, pa.float32()), type=pa.list_(pa.float32()), mask=mask
    )
