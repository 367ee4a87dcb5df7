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

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch

from pipeline.columns import AUDIO, SAMPLE_RATE, audio_arrays, task_column
from pipeline.errors import ModelLoadError, RowError
from pipeline.models.classifier import ClassifierBase, load_classifier
from pipeline.models.device import configure_threads, pick_device
from pipeline.schemas import LABEL_SCORE, LABELLED_SEGMENT, WINDOW
from pipeline.spec import ClassifyTaskSpec, StorageOptions
from pipeline.stages.base import Stage, StageOutput, check_audio
from pipeline.stages.windows import Window, batch_budget, plan_windows, pool, run_windows

DEFAULT_WINDOW_S = 30.0  # for models without a window of their own


def output_schema(task: str) -> pa.Schema:
    """The columns both classification stages add (typed as the classifications table)."""
    types = {
        "labels": pa.list_(LABEL_SCORE),
        "windows": pa.list_(WINDOW),
        "segments": pa.list_(LABELLED_SEGMENT),
        "model": pa.string(),
    }
    return pa.schema([pa.field(task_column(task, f), t) for f, t in types.items()])


def check_row(
    x: np.ndarray | None, rate: int | None, model: ClassifierBase, what: str
) -> RowError | None:
    """A row error when the item is at the wrong rate or too short for the model."""
    return check_audio(
        x,
        rate,
        expected_rate=model.sampling_rate,
        min_samples=model.min_samples,
        model=model.name,
        too_short=f"it is too short for one {what}",
    )


class ClassifyStage(Stage):
    """Top-k clip labels per item, pooled over windows for long items."""

    def __init__(self, spec: ClassifyTaskSpec, storage: StorageOptions) -> None:
        self.spec = spec
        self.name = self.task = spec.task_name
        device = pick_device(spec.device)
        configure_threads(device, spec.cpu_threads)
        self.model = load_classifier(spec, storage, device)
        rate = self.model.sampling_rate
        self.window = self._window_samples(rate)
        self.overlap = int(round(spec.window_overlap_s * rate))
        if self.overlap >= self.window:
            raise ModelLoadError(
                f"task {self.name}: window_overlap_s ({spec.window_overlap_s}) must be less than "
                f"the window ({self.window / rate:.3f} s)"
            )
        self._budget = batch_budget(spec.batch_seconds, device, rate)
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

    def reads(self) -> Sequence[str]:
        return (AUDIO, SAMPLE_RATE)

    def adds(self) -> pa.Schema:
        return output_schema(self.name)

    def process(self, rows: pa.Table) -> StageOutput:
        audio = audio_arrays(rows.column(AUDIO))[0]
        rates = rows.column(SAMPLE_RATE).to_pylist()
        errors = {
            i: e
            for i, (x, r) in enumerate(zip(audio, rates, strict=True))
            if (e := check_row(x, r, self.model, "input")) is not None
        }
        windows = [
            Window(i, *b)
            for i, x in enumerate(audio)
            if i not in errors
            for b in plan_windows(len(x), self.window, self.overlap)
        ]
        scores = self.window_scores(windows, audio, errors)
        columns: dict[str, list] = {f.name: [None] * len(audio) for f in self.adds()}
        per_row: dict[int, list[int]] = {}
        for j, w in enumerate(windows):
            per_row.setdefault(w.row, []).append(j)
        rate = self.model.sampling_rate
        for i, js in per_row.items():
            if i in errors:  # one of its windows failed
                continue
            columns[task_column(self.name, "labels")][i] = self.top(
                pool(scores[js], self.spec.pooling)
            )
            columns[task_column(self.name, "model")][i] = self.model.name
            if self.spec.keep_windows:
                columns[task_column(self.name, "windows")][i] = [
                    {
                        "start": windows[j].start / rate,
                        "end": windows[j].stop / rate,
                        "labels": self.top(scores[j]),
                    }
                    for j in js
                ]
        return StageOutput(columns=columns, errors=errors)

    def window_scores(
        self, windows: list[Window], audio: list[np.ndarray], errors: dict[int, RowError]
    ) -> np.ndarray:
        """[windows, labels] float32 scores (after the activation); NaN rows where one failed."""
        results = run_windows(
            windows,
            audio,
            cost=self.model.cost,
            budget=self._budget,
            predict=self._scores,
            errors=errors,
            model_name=self.model.name,
            stage_name=self.name,
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
