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

import numpy as np
import pyarrow as pa

from pipeline.columns import AUDIO, SAMPLE_RATE, audio_arrays
from pipeline.models.ctc_load import load_ctc
from pipeline.models.ctc_model import CtcAdapter, FrameOutput
from pipeline.stages.base import StageOutput
from pipeline.stages.batching import Batching, Span
from pipeline.stages.model import ModelStage

WORD_TYPE = pa.struct([("word", pa.string()), ("start", pa.float64()), ("end", pa.float64())])


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


def kept_frames(chunk: Span, samples_per_frame: int) -> slice:
    """The logit frames of `chunk` that survive stride removal (the pipeline's rounding).

    A chunk that is the whole item keeps every frame, as the unchunked pipeline does
    (Parakeet yields one more frame than the rounded count for some lengths)."""
    if chunk.start == chunk.left == chunk.right == 0:
        return slice(0, None)
    token_n = int(round(chunk.samples / samples_per_frame))
    left = int(round(chunk.left / chunk.samples * token_n))
    right = int(round(chunk.right / chunk.samples * token_n))
    return slice(left, token_n - right)


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


class CtcStage(ModelStage):
    """Greedy CTC transcription with any wav2vec2-style `AutoModelForCTC` checkpoint, or
    M-CTC-T (`pipeline/models/mctct/`: 480 samples per frame, 400-sample minimum)."""

    FIELDS = {
        "text": pa.string(),
        "words": pa.list_(WORD_TYPE),
        "confidence": pa.float64(),
        "model": pa.string(),
    }

    def load_model(self, device: str) -> CtcAdapter:
        return load_ctc(self.spec, self.storage, device)

    def setup(self) -> None:
        spec, m = self.spec, self.model
        rate, align = m.sampling_rate, m.samples_per_frame
        self.too_short = (
            f"its {m.min_samples}-sample receptive field yields no frames "
            "(the transformers pipeline raises on it)"
        )
        stride_s = (
            spec.stride_length_s if spec.stride_length_s is not None else spec.chunk_length_s / 6
        )
        # Chunk and stride sizes are rounded to whole frames, as the pipeline rounds them.
        self._chunk_len = int(round(spec.chunk_length_s * rate / align) * align)
        self._stride = int(round(stride_s * rate / align) * align)
        seconds = spec.batch_seconds or (320.0 if self.device.startswith("cuda") else 40.0)
        self._batching = Batching(budget=int(seconds * rate))

    def process(self, rows: pa.Table) -> StageOutput:
        audio = audio_arrays(rows.column(AUDIO))[0]
        errors = self.checked(audio, rows.column(SAMPLE_RATE).to_pylist())
        chunks = [c for i, x in enumerate(audio) if i not in errors for c in self._chunks(i, x)]
        frames = self.run_batched(
            chunks,
            lambda batch: self.model.predict([audio[c.row][c.start : c.stop] for c in batch]),
            rows=[c.row for c in chunks],
            sizes=[c.samples for c in chunks],
            batching=self._batching,
            errors=errors,
        )
        per_row: dict[int, list[tuple[Span, FrameOutput]]] = {}
        for chunk, out in zip(chunks, frames, strict=True):
            per_row.setdefault(chunk.row, []).append((chunk, out))
        columns = self.empty_columns(len(audio))
        for i, pieces in per_row.items():
            if i not in errors:  # else one of its chunks failed
                self.put(columns, i, self._transcribe(pieces, len(audio[i])))
        return StageOutput(columns=columns, errors=errors)

    def _chunks(self, row: int, x: np.ndarray) -> list[Span]:
        return [
            Span(row, *b) for b in chunk_bounds(len(x), self._chunk_len, self._stride, self._stride)
        ]

    def _transcribe(self, pieces: list[tuple[Span, FrameOutput]], samples: int) -> dict:
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
