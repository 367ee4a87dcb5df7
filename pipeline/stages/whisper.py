"""Whisper transcription (`kind: whisper`) with any WhisperForConditionalGeneration checkpoint.

For each healthy row the stage writes `{task}__text`, `__language`, `__language_prob`,
`__segments`, `__words`, `__avg_logprob`, `__no_speech_prob`, `__compression_ratio`,
`__flags`, `__confidence` and `__model` (definitions in `pipeline/models/whisper/result.py`;
flags in `pipeline/models/whisper/flags.py`).

How a batch runs:
1. rows at the wrong sample rate, and rows shorter than one analysis window (400
   samples, 25 ms), fail alone (MODEL_FAILED);
2. short-form items (up to 30 s) without timestamps are sorted by length and decoded
   `micro_batch` at a time (default 16 on CPU, 64 on a GPU; on a GPU the batch's samples
   go to the device in one copy): log-mel on the model's device, the encoder once, one decoder
   step for language and no-speech, then greedy (or beam) `generate` with temperature
   fallback (`pipeline/models/whisper/decode.py`). Greedy is the default: transformers'
   ASR pipeline silently runs 5-beam search unless the generation config sets
   `num_beams`; here `num_beams` comes from the spec only;
3. long-form items (over 30 s), and short ones when the task asks for timestamps, are
   decoded window by window with timestamps, `micro_batch` windows of different items
   per step (`pipeline/models/whisper/longform.py`);
4. word timestamps, when asked, come from one extra teacher-forced decoder pass per
   window (`pipeline/models/whisper/align.py`); the model stays on SDPA for the rest.

A micro-batch that raises is retried item by item, so only the item that raises alone
fails. A transcript does not depend on what else was in its batch: every window is
decoded with the same prompt length and no padding, and sampling (temperature
fallback) draws its noise from the item's own samples and the spec's seed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.columns import AUDIO, SAMPLE_RATE, audio_arrays
from pipeline.errors import ErrorCode, RowError
from pipeline.schemas import SEGMENT, WORD
from pipeline.stages.base import StageOutput
from pipeline.stages.batching import Batching
from pipeline.stages.model import ModelStage

FIELDS: dict[str, pa.DataType] = {
    "text": pa.string(),
    "language": pa.string(),
    "language_prob": pa.float64(),
    "segments": pa.list_(SEGMENT),
    "words": pa.list_(WORD),
    "avg_logprob": pa.float64(),
    "no_speech_prob": pa.float64(),
    "compression_ratio": pa.float64(),
    "flags": pa.list_(pa.string()),
    "confidence": pa.float64(),
    "model": pa.string(),
}


class WhisperStage(ModelStage):
    """Batched Whisper transcription: short-form, long-form, timestamps, flags."""

    FIELDS = FIELDS
    too_short = "less than one analysis window, nothing to transcribe"

    def load_model(self, device: str):
        from pipeline.models.whisper.load import load_whisper

        return load_whisper(self.spec, self.storage, device)

    def setup(self) -> None:
        from pipeline.models.whisper.decode import DecodeOptions
        from pipeline.models.whisper.features import LogMel

        self.options = DecodeOptions.from_spec(self.spec, self.model)
        self.features = LogMel(self.model.extractor, self.device)
        # Small on CPU: a micro-batch decodes until its longest transcript ends, and every
        # row costs until then (measured: 16 items 1.7x faster than 64 with greedy, 3.5x
        # with 5 beams, benchmarks/RESULTS.md). Large on a GPU: decoding is launch-bound.
        self.micro_batch = self.spec.micro_batch or (64 if self.device.startswith("cuda") else 16)

    def process(self, rows: pa.Table) -> StageOutput:
        from pipeline.models.whisper.processors import item_key

        audio, values, offsets = audio_arrays(rows.column(AUDIO))
        errors = self.checked(audio, rows.column(SAMPLE_RATE).to_pylist())
        ok = [i for i in range(len(audio)) if i not in errors]
        # Sampling keys hash every sample: only worth it when a temperature samples.
        sampling = any(t > 0 for t in self.options.temperatures)
        keys = {i: item_key(audio[i], self.spec.seed) if sampling else 0 for i in ok}
        samples = self._on_device(audio, values, offsets)
        # One more log-mel frame than a window holds makes an item long-form, as in
        # transformers (`total_input_frames > num_segment_frames`).
        long = {i for i in ok if len(audio[i]) // self.model.hop_length > self.model.window_frames}
        timed = [i for i in ok if i in long or self.spec.timestamps != "none"]
        plain = sorted(set(ok) - set(timed))
        results: dict[int, dict] = {}
        self._short_form(plain, samples, keys, results, errors)
        self._timestamped(timed, samples, keys, long, results, errors)
        columns = self.empty_columns(len(audio))
        for i, values in results.items():
            self.put(columns, i, values)
        return StageOutput(columns=columns, errors=errors)

    def _on_device(
        self, audio: list[np.ndarray | None], values: np.ndarray, offsets: np.ndarray
    ) -> list:
        """Rows as the feature code takes them: on a GPU, views of one upload of the
        whole batch (no per-row copies on the host); on CPU, the numpy views."""
        if not self.model.device.startswith("cuda") or not len(values):
            return audio
        uploaded = self.features.upload(values)
        return [
            None if a is None else uploaded[offsets[i] : offsets[i + 1]]
            for i, a in enumerate(audio)
        ]

    def _short_form(
        self,
        rows: list[int],
        audio: list,
        keys: dict[int, int],
        results: dict[int, dict],
        errors: dict[int, RowError],
    ) -> None:
        """Items sorted by length, `micro_batch` at a time."""
        decoded = self.run_batched(
            rows,
            lambda group: self._decode_short(group, audio, keys),
            rows=rows,
            sizes=[len(audio[i]) for i in rows],
            batching=Batching(max_items=self.micro_batch),
            errors=errors,
        )
        results.update((i, d) for i, d in zip(rows, decoded, strict=True) if d is not None)

    def _decode_short(self, group: list[int], audio: list, keys: dict[int, int]) -> list[dict]:
        from pipeline.models.whisper.decode import short_form
        from pipeline.models.whisper.result import item_columns

        features = self.features.windows([audio[i] for i in group])
        first, windows = short_form(self.model, self.options, features, [keys[i] for i in group])
        rate = self.model.sampling_rate
        return [
            item_columns(
                self.model,
                self.options,
                windows=[w],
                segments=None,
                words=None,
                language=lang,
                language_prob=prob,
                duration_s=len(audio[i]) / rate,
            )
            for i, w, lang, prob in zip(
                group, windows, first.languages, first.language_probs, strict=True
            )
        ]

    def _timestamped(
        self,
        rows: list[int],
        audio: list,
        keys: dict[int, int],
        long: set[int],
        results: dict[int, dict],
        errors: dict[int, RowError],
    ) -> None:
        if not rows:
            return
        from pipeline.models.whisper.longform import Job, TimestampedDecoder
        from pipeline.models.whisper.result import item_columns

        decoder = TimestampedDecoder(
            self.model,
            self.options,
            self.features,
            batch=self.micro_batch,
            word_timestamps=self.spec.timestamps == "word",
        )
        # Longest first: long items take many steps, short ones fill in behind them.
        order = sorted(rows, key=lambda i: -len(audio[i]))
        jobs = [Job(row=i, audio=audio[i], key=keys[i], long=i in long) for i in order]
        failed: set[int] = set()

        def on_error(job: Job, exc: Exception) -> None:
            failed.add(job.row)
            errors[job.row] = self._failure(exc)

        decoder.run(jobs, on_error)
        rate = self.model.sampling_rate
        for job in jobs:
            if job.row in failed:
                continue
            results[job.row] = item_columns(
                self.model,
                self.options,
                windows=job.windows,
                segments=job.segments,
                words=job.words if self.spec.timestamps == "word" else None,
                language=job.language,
                language_prob=job.language_prob,
                duration_s=len(job.audio) / rate,
            )

    def _failure(self, exc: Exception) -> RowError:
        message = f"{self.model.name} raised on this item alone: {type(exc).__name__}: {exc}"
        return RowError(ErrorCode.MODEL_FAILED, message[:1000])
