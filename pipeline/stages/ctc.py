"""CTC transcription: greedy decoding with word timestamps, as `transformers.pipeline` does.

For each healthy row the stage writes `{task}__text`, `{task}__words` (word start/end
seconds from the CTC alignment; null when `word_timestamps` is off),
`{task}__confidence` and `{task}__model`.

How a batch runs:
1. every item is cut into the chunks `pipeline("automatic-speech-recognition",
   chunk_length_s=..., stride_length_s=...)` would make (one chunk when it is shorter
   than `chunk_length_s`: identical to no chunking);
2. the chunks of all items are sorted by length and cut into micro-batches whose
   padded size (longest x count) stays within `batch_seconds` of audio;
3. the model adapter returns each chunk's per-frame argmax ids, exactly as if the chunk
   had run alone (see `pipeline/models/ctc_model.py`);
4. each chunk's stride frames are dropped, the rest concatenated, and the ids decoded by
   the tokenizer the way the pipeline decodes them.

`confidence` is the mean, over the tokens the transcript emits (the first frame of each
run of a non-blank id, word delimiters included), of that frame's softmax probability
of its argmax token; null when the transcript is empty.

Items shorter than the model's receptive field (400 samples, 25 ms, for wav2vec2-style
encoders and for M-CTC-T's first analysis window) make the reference pipeline raise ("Kernel size can't be greater than actual
input size"); here they become MODEL_FAILED rows with that explanation. A micro-batch
whose forward raises is retried item by item, so only the item that raises alone fails.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.columns import AUDIO, SAMPLE_RATE, audio_arrays, task_column
from pipeline.errors import ErrorCode, RowError
from pipeline.models.ctc_model import CtcAdapter, FrameOutput
from pipeline.models.device import configure_threads, pick_device
from pipeline.models.loading import load_ctc
from pipeline.spec import CtcTaskSpec, StorageOptions
from pipeline.stages.base import Stage, StageOutput, check_audio

log = logging.getLogger(__name__)

WORD_TYPE = pa.struct([("word", pa.string()), ("start", pa.float64()), ("end", pa.float64())])


@dataclass(frozen=True)
class Chunk:
    """One model input: samples [start, stop) of row `row`, with stride samples to drop."""

    row: int
    start: int
    stop: int
    left: int
    right: int

    @property
    def samples(self) -> int:
        return self.stop - self.start


def chunk_bounds(
    samples: int, chunk_len: int, stride_left: int, stride_right: int
) -> list[tuple[int, int, int, int]]:
    """(start, stop, left, right) per chunk, as `transformers`' ASR `chunk_iter` cuts them.

    The last chunk is skipped when it would lie entirely inside its left stride,
    again as the pipeline does.
    """
    step = chunk_len - stride_left - stride_right
    bounds = []
    for start in range(0, samples, step):
        stop = min(start + chunk_len, samples)
        is_last = start + chunk_len >= samples
        left, right = (0 if start == 0 else stride_left), (0 if is_last else stride_right)
        if stop - start > left:
            bounds.append((start, stop, left, right))
        if is_last:
            break
    return bounds


def kept_frames(chunk: Chunk, samples_per_frame: int) -> slice:
    """The logit frames of `chunk` that survive stride removal (the pipeline's rounding).

    A chunk that is the whole item keeps every frame, as the unchunked pipeline does
    (Parakeet yields one more frame than the rounded count for some lengths)."""
    if chunk.start == chunk.left == chunk.right == 0:
        return slice(0, None)
    token_n = int(round(chunk.samples / samples_per_frame))
    left = int(round(chunk.left / chunk.samples * token_n))
    right = int(round(chunk.right / chunk.samples * token_n))
    return slice(left, token_n - right)


def micro_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped shortest first, each group's padded size (longest x count) <= budget.

    An item longer than the budget gets a group of its own.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and lengths[i] * (len(current) + 1) > budget:
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


def emitted_confidence(ids: np.ndarray, probs: np.ndarray, blank: int) -> float | None:
    """Mean probability at the first frame of each run of a non-blank id."""
    starts = np.ones(len(ids), dtype=bool)
    starts[1:] = ids[1:] != ids[:-1]
    emitted = starts & (ids != blank)
    return float(probs[emitted].mean()) if emitted.any() else None


def word_times(offsets: list[dict], starts: np.ndarray, ends: np.ndarray) -> list[dict]:
    """Tokenizer word offsets (frame indices, end exclusive) -> seconds within the item.

    A word starts where its first frame starts and ends where its last frame ends.
    """
    return [
        {
            "word": w["word"],
            "start": float(starts[w["start_offset"]]),
            "end": float(ends[w["end_offset"] - 1]),
        }
        for w in offsets
    ]


class CtcStage(Stage):
    """Greedy CTC transcription with any wav2vec2-style `AutoModelForCTC` checkpoint, or
    M-CTC-T (`pipeline/models/mctct/`: 480 samples per frame, 400-sample minimum)."""

    def __init__(self, spec: CtcTaskSpec, storage: StorageOptions) -> None:
        self.spec = spec
        self.name = self.task = spec.task_name
        device = pick_device(spec.device)
        configure_threads(device, spec.cpu_threads)
        self.model: CtcAdapter = load_ctc(spec, storage, device)
        rate, align = self.model.sampling_rate, self.model.samples_per_frame
        stride_s = (
            spec.stride_length_s if spec.stride_length_s is not None else spec.chunk_length_s / 6
        )
        # Chunk and stride sizes are rounded to whole frames, as the pipeline rounds them.
        self._chunk_len = int(round(spec.chunk_length_s * rate / align) * align)
        self._stride = int(round(stride_s * rate / align) * align)
        seconds = spec.batch_seconds or (320.0 if device.startswith("cuda") else 40.0)
        self._budget = int(seconds * rate)

    def reads(self) -> Sequence[str]:
        return (AUDIO, SAMPLE_RATE)

    def adds(self) -> pa.Schema:
        types = {
            "text": pa.string(),
            "words": pa.list_(WORD_TYPE),
            "confidence": pa.float64(),
            "model": pa.string(),
        }
        return pa.schema([pa.field(task_column(self.name, f), t) for f, t in types.items()])

    def process(self, rows: pa.Table) -> StageOutput:
        audio = audio_arrays(rows.column(AUDIO))[0]
        rates = rows.column(SAMPLE_RATE).to_pylist()
        errors = {i: e for i, e in enumerate(map(self._check, audio, rates)) if e is not None}
        chunks = [c for i, x in enumerate(audio) if i not in errors for c in self._chunks(i, x)]
        frames = self._predict(chunks, audio, errors)
        per_row: dict[int, list[tuple[Chunk, FrameOutput]]] = {}
        for chunk, out in zip(chunks, frames, strict=True):
            per_row.setdefault(chunk.row, []).append((chunk, out))
        columns: dict[str, list] = {f.name: [None] * len(audio) for f in self.adds()}
        for i, pieces in per_row.items():
            if i in errors:  # one of its chunks failed
                continue
            for field, value in self._transcribe(pieces, len(audio[i])).items():
                columns[task_column(self.name, field)][i] = value
        return StageOutput(columns=columns, errors=errors)

    def _check(self, x: np.ndarray | None, rate: int | None) -> RowError | None:
        m = self.model
        return check_audio(
            x,
            rate,
            expected_rate=m.sampling_rate,
            min_samples=m.receptive_field,
            model=m.name,
            too_short=f"its {m.receptive_field}-sample receptive field yields no frames "
            "(the transformers pipeline raises on it)",
        )

    def _chunks(self, row: int, x: np.ndarray) -> list[Chunk]:
        return [
            Chunk(row, *b)
            for b in chunk_bounds(len(x), self._chunk_len, self._stride, self._stride)
        ]

    def _predict(
        self, chunks: list[Chunk], audio: list[np.ndarray], errors: dict[int, RowError]
    ) -> list[FrameOutput | None]:
        frames: list[FrameOutput | None] = [None] * len(chunks)
        for batch in micro_batches([c.samples for c in chunks], self._budget):
            inputs = [audio[chunks[j].row][chunks[j].start : chunks[j].stop] for j in batch]
            try:
                outputs = self.model.predict(inputs)
            except Exception as exc:  # the model may raise anything; isolate the item
                log.warning(
                    "%s: micro-batch of %d failed (%s); retrying item by item",
                    self.name,
                    len(batch),
                    exc,
                )
                outputs = [
                    self._predict_one(x, chunks[j].row, errors)
                    for j, x in zip(batch, inputs, strict=True)
                ]
            for j, out in zip(batch, outputs, strict=True):
                frames[j] = out
        return frames

    def _predict_one(
        self, x: np.ndarray, row: int, errors: dict[int, RowError]
    ) -> FrameOutput | None:
        if row in errors:  # an earlier chunk of this row already failed
            return None
        try:
            return self.model.predict([x])[0]
        except Exception as exc:
            message = f"{self.model.name} raised on this item alone: {type(exc).__name__}: {exc}"
            errors[row] = RowError(ErrorCode.MODEL_FAILED, message[:1000])
            return None

    def _transcribe(self, pieces: list[tuple[Chunk, FrameOutput]], samples: int) -> dict:
        m = self.model
        ids, probs, starts = [], [], []
        for chunk, out in pieces:
            keep = kept_frames(chunk, m.samples_per_frame)
            ids.append(out.ids[keep])
            probs.append(out.probs[keep])
            starts.append(chunk.start + np.arange(len(out.ids))[keep] * m.samples_per_frame)
        all_ids = np.concatenate(ids)
        tok = m.tokenizer
        result = {
            "confidence": emitted_confidence(all_ids, np.concatenate(probs), tok.pad_token_id),
            "model": m.name,
        }
        if not self.spec.word_timestamps:
            return {**result, "text": tok.decode(all_ids)}
        decoded = tok.decode(all_ids, output_word_offsets=True)
        # Frame times in samples first, one division last: the pipeline's arithmetic.
        first = np.concatenate(starts)
        last = np.minimum(first + m.samples_per_frame, samples)
        rate = m.sampling_rate
        words = word_times(decoded.word_offsets, first / rate, last / rate)
        return {**result, "text": decoded.text, "words": words}
