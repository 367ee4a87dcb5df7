"""Clip classification with any AutoModelForAudioClassification checkpoint (AST, wav2vec2-,
HuBERT-, WavLM-style sequence classifiers, ...): top-k labels with scores per item.

For each healthy row the stage writes `{task}__labels` (best first), `{task}__windows`
(each window's start, end and top labels, when `keep_windows`; else null),
`{task}__segments` (always null: clip models have no segments) and `{task}__model`.

How a batch runs:
1. items longer than the window (AST: `max_length` fbank frames, 10.255 s at 16 kHz;
   others: `window_s`, default 30 s) are cut into windows (`windows.plan_windows`): every
   `window - overlap` samples, the last one ending at the item's end. An item that fits is
   one window, the whole item, so it gets exactly what `transformers.pipeline(
   "audio-classification")` gives it (which would cut a long AST item to its first window);
2. windows of all rows are sorted by padded cost and cut into micro-batches within
   `batch_seconds`; the adapter (`pipeline/models/classifier.py`) gives each window the
   logits it would get alone (AST features are computed on the model's device);
3. scores are the softmax of the logits, or the sigmoid for multi-label models
   (`problem_type: multi_label_classification`, e.g. AudioSet) or when the spec says so;
4. the windows' scores are pooled per label (mean or max), the top `top_k` kept, and of
   those only the ones scoring at least `threshold` (an empty list when none does).

A row fails alone (MODEL_FAILED) when it is at the wrong sample rate, shorter than the
model's smallest input (a 25 ms fbank frame for AST, the conv receptive field otherwise),
or when one of its windows makes the model raise even alone: a micro-batch that raises
is retried window by window.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from pipeline.columns import AUDIO, SAMPLE_RATE, audio_arrays
from pipeline.errors import ModelLoadError, RowError
from pipeline.models.classifier import ClassifierBase, load_classifier
from pipeline.schemas import LABEL_SCORE, LABELLED_SEGMENT, WINDOW
from pipeline.stages.base import StageOutput
from pipeline.stages.batching import Batching, Span
from pipeline.stages.model import ModelStage
from pipeline.stages.windows import batch_budget, plan_windows, pool

DEFAULT_WINDOW_S = 30.0  # for models without a window of their own


# The columns both classification stages add (typed as the classifications table).
CLASSIFICATION_FIELDS: dict[str, pa.DataType] = {
    "labels": pa.list_(LABEL_SCORE),
    "windows": pa.list_(WINDOW),
    "segments": pa.list_(LABELLED_SEGMENT),
    "model": pa.string(),
}


class ClassifyStage(ModelStage):
    """Top-k clip labels per item, pooled over windows for long items."""

    FIELDS = CLASSIFICATION_FIELDS
    too_short = "it is too short for one input"

    def load_model(self, device: str) -> ClassifierBase:
        return load_classifier(self.spec, self.storage, device)

    def setup(self) -> None:
        spec, rate = self.spec, self.model.sampling_rate
        self.window = self._window_samples(rate)
        self.overlap = int(round(spec.window_overlap_s * rate))
        if self.overlap >= self.window:
            raise ModelLoadError(
                f"task {self.name}: window_overlap_s ({spec.window_overlap_s}) must be less than "
                f"the window ({self.window / rate:.3f} s)"
            )
        self._batching = Batching(budget=batch_budget(spec.batch_seconds, self.device, rate))
        self.sigmoid = spec.activation == "sigmoid" or (
            spec.activation == "auto" and self.model.multi_label
        )
        self._top_k = min(spec.top_k, len(self.model.labels))

    def _window_samples(self, rate: int) -> int:
        most = self.model.max_window
        if self.spec.window_s is None:
            return most or int(round(DEFAULT_WINDOW_S * rate))
        window = int(round(self.spec.window_s * rate))
        if most is not None and window > most:
            raise ModelLoadError(
                f"task {self.name}: window_s {self.spec.window_s} is longer than the "
                f"{most / rate:.3f} s {self.model.name} sees at once; leave it unset or lower it"
            )
        return window

    def process(self, rows: pa.Table) -> StageOutput:
        audio = audio_arrays(rows.column(AUDIO))[0]
        errors = self.checked(audio, rows.column(SAMPLE_RATE).to_pylist())
        windows = [
            Span(i, *b)
            for i, x in enumerate(audio)
            if i not in errors
            for b in plan_windows(len(x), self.window, self.overlap)
        ]
        scores = self.window_scores(windows, audio, errors)
        columns = self.empty_columns(len(audio))
        per_row: dict[int, list[int]] = {}
        for j, w in enumerate(windows):
            per_row.setdefault(w.row, []).append(j)
        for i, js in per_row.items():
            if i not in errors:  # else one of its windows failed
                self.put(columns, i, self._row_labels([windows[j] for j in js], scores[js]))
        return StageOutput(columns=columns, errors=errors)

    def _row_labels(self, windows: list[Span], scores: np.ndarray) -> dict:
        rate = self.model.sampling_rate
        values = {"labels": self.top(pool(scores, self.spec.pooling)), "model": self.model.name}
        if self.spec.keep_windows:
            values["windows"] = [
                {"start": w.start / rate, "end": w.stop / rate, "labels": self.top(row)}
                for w, row in zip(windows, scores, strict=True)
            ]
        return values

    def window_scores(
        self, windows: list[Span], audio: list[np.ndarray], errors: dict[int, RowError]
    ) -> np.ndarray:
        """[windows, labels] float32 scores (after the activation); NaN rows where one failed."""
        results = self.run_batched(
            windows,
            lambda batch: self._scores([audio[w.row][w.start : w.stop] for w in batch]),
            rows=[w.row for w in windows],
            sizes=[self.model.cost(w.samples) for w in windows],
            batching=self._batching,
            errors=errors,
        )
        out = np.full((len(windows), len(self.model.labels)), np.nan, np.float32)
        done = [j for j, r in enumerate(results) if r is not None]
        if done:  # one device-to-host copy for the whole call
            out[done] = torch.stack([results[j] for j in done]).cpu().numpy()
        return out

    def _scores(self, audio: list[np.ndarray]) -> torch.Tensor:
        logits = self.model.logits(audio)
        return logits.sigmoid() if self.sigmoid else logits.softmax(dim=-1)

    def top(self, scores: np.ndarray) -> list[dict]:
        """The `top_k` best labels, best first, without those under `threshold`."""
        order = np.argsort(-scores, kind="stable")[: self._top_k]
        threshold = self.spec.threshold
        return [
            {"label": self.model.labels[k], "score": float(scores[k])}
            for k in order
            if threshold is None or scores[k] >= threshold
        ]
