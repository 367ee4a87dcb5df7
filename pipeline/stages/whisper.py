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

import logging
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from pipeline.columns import AUDIO, SAMPLE_RATE, audio_arrays, task_column
from pipeline.errors import ErrorCode, RowError
from pipeline.models.device import configure_threads, pick_device
from pipeline.schemas import SEGMENT, WORD
from pipeline.spec import StorageOptions, WhisperTaskSpec
from pipeline.stages.base import Stage, StageOutput, check_audio

log = logging.getLogger(__name__)

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


class WhisperStage(Stage):
    """Batched Whisper transcription: short-form, long-form, timestamps, flags."""

    def __init__(self, spec: WhisperTaskSpec, storage: StorageOptions) -> None:
        from pipeline.models.whisper.decode import DecodeOptions
        from pipeline.models.whisper.features import LogMel
        from pipeline.models.whisper.load import load_whisper

        self.spec = spec
        self.name = self.task = spec.task_name
        device = pick_device(spec.device)
        configure_threads(device, spec.cpu_threads)
        self.model = load_whisper(spec, storage, device)
        self.options = DecodeOptions.from_spec(spec, self.model)
        self.features = LogMel(self.model.extractor, device)
        self._min_samples = int(self.model.extractor.n_fft)
        # Small on CPU: a micro-batch decodes until its longest transcript ends, and every
        # row costs until then (measured: 16 items 1.7x faster than 64 with greedy, 3.5x
        # with 5 beams, benchmarks/RESULTS.md). Large on a GPU: decoding is launch-bound.
        self.micro_batch = spec.micro_batch or (64 if device.startswith("cuda") else 16)

    def reads(self) -> Sequence[str]:
        return (AUDIO, SAMPLE_RATE)

    def adds(self) -> pa.Schema:
        return pa.schema([pa.field(task_column(self.name, f), t) for f, t in FIELDS.items()])

    def process(self, rows: pa.Table) -> StageOutput:
        from pipeline.models.whisper.processors import item_key

        audio, values, offsets = audio_arrays(rows.column(AUDIO))
        rates = rows.column(SAMPLE_RATE).to_pylist()
        errors = {i: e for i, e in enumerate(map(self._check, audio, rates)) if e is not None}
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
        columns: dict[str, list] = {task_column(self.name, f): [None] * len(audio) for f in FIELDS}
        for i, values in results.items():
            for field, value in values.items():
                columns[task_column(self.name, field)][i] = value
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

    def _check(self, x: np.ndarray | None, rate: int | None) -> RowError | None:
        m = self.model
        return check_audio(
            x,
            rate,
            expected_rate=m.sampling_rate,
            min_samples=self._min_samples,
            model=m.name,
            too_short="less than one analysis window, nothing to transcribe",
        )

    def _short_form(
        self,
        rows: list[int],
        audio: list,
        keys: dict[int, int],
        results: dict[int, dict],
        errors: dict[int, RowError],
    ) -> None:
        order = sorted(rows, key=lambda i: len(audio[i]))
        size = self.micro_batch
        for start in range(0, len(order), size):
            group = order[start : start + size]
            try:
                results.update(self._decode_short(group, audio, keys))
            except Exception as exc:  # the model may raise anything; isolate the item
                log.warning(
                    "%s: micro-batch of %d failed (%s); retrying item by item",
                    self.name,
                    len(group),
                    exc,
                )
                for i in group:
                    try:
                        results.update(self._decode_short([i], audio, keys))
                    except Exception as exc_one:
                        errors[i] = self._failure(exc_one)

    def _decode_short(self, group: list[int], audio: list, keys: dict[int, int]) -> dict[int, dict]:
        from pipeline.models.whisper.decode import short_form
        from pipeline.models.whisper.result import item_columns

        features = self.features.windows([audio[i] for i in group])
        first, windows = short_form(self.model, self.options, features, [keys[i] for i in group])
        rate = self.model.sampling_rate
        return {
            i: item_columns(
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
        }

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
