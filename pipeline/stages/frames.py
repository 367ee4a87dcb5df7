"""Frame classification (AutoModelForAudioFrameClassification: wav2vec2, WavLM, UniSpeech-SAT,
data2vec-audio) into labelled segments.

For each healthy row the stage writes `{task}__segments` (start, end, label, mean score,
by start time), `{task}__model`, and nulls for `{task}__labels` and `{task}__windows`.

How a batch runs:
1. each item is cut into windows of `window_s` (`windows.plan_windows`, starts on frame
   boundaries so every window's frames sit on the item's own frame grid); an item that
   fits is one window;
2. windows are micro-batched within `batch_seconds` and run as if alone (padded batches
   with the masked group norm of `ctc_model.py`, see `pipeline/models/classifier.py`);
3. per-frame probabilities are the softmax of the logits, or the sigmoid for
   multi-label models / when the spec says so;
4. windows are stitched without seams: two neighbours split their overlap in the
   middle, each keeping the frames nearer its own centre (`windows.kept_ranges`). An
   item within one window gets exactly the whole-item pass; beyond, a frame differs from
   a whole-item pass only through context further away than half the overlap (the
   transformer attends to the whole window; with a local model the stitch is exact,
   as `tests/stages/test_frames.py` shows);
5. `segments.segment` turns the item's probabilities into segments (smoothing, threshold,
   merge gap, minimum length), restricted to `labels` when the spec names some.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import torch

from pipeline.columns import AUDIO, SAMPLE_RATE, audio_arrays, task_column
from pipeline.errors import ModelLoadError, RowError
from pipeline.models.classifier import WaveformModel, load_frame_classifier
from pipeline.stages.base import StageOutput
from pipeline.stages.batching import Batching, Span
from pipeline.stages.classify import CLASSIFICATION_FIELDS
from pipeline.stages.model import ModelStage
from pipeline.stages.segments import SegmentRules, segment
from pipeline.stages.windows import batch_budget, kept_ranges, plan_windows


class FramesStage(ModelStage):
    """Labelled segments from per-frame probabilities, long items in stitched windows."""

    FIELDS = CLASSIFICATION_FIELDS
    too_short = "it is too short for one frame"

    def load_model(self, device: str) -> WaveformModel:
        return load_frame_classifier(self.spec, self.storage, device)

    def setup(self) -> None:
        spec, m = self.spec, self.model
        rate, step = m.sampling_rate, m.samples_per_frame
        self.window = max(1, round(spec.window_s * rate / step)) * step
        # At least one frame of overlap: a frame straddling two windows is then inside one.
        self.overlap = max(1, math.ceil(spec.window_overlap_s * rate / step - 1e-9)) * step
        if self.window <= 2 * self.overlap or self.window < m.min_samples:
            raise ModelLoadError(
                f"task {self.name}: window_s {spec.window_s} is too short for its overlap "
                f"({self.overlap / rate:.3f} s once rounded up to whole frames) or for one frame"
            )
        self._batching = Batching(budget=batch_budget(spec.batch_seconds, self.device, rate))
        self.sigmoid = spec.activation == "sigmoid" or (spec.activation == "auto" and m.multi_label)
        unknown = sorted(set(spec.labels or ()) - set(m.labels))
        if unknown:
            raise ModelLoadError(
                f"task {self.name}: labels {unknown} are not labels of {m.name} "
                f"(it has: {', '.join(m.labels)})"
            )
        self.label_ids = [m.labels.index(lb) for lb in spec.labels] if spec.labels else None
        self.rules = SegmentRules(
            threshold=spec.threshold,
            smoothing_frames=spec.smoothing_frames,
            min_segment_s=spec.min_segment_s,
            merge_gap_s=spec.merge_gap_s,
        )

    def process(self, rows: pa.Table) -> StageOutput:
        audio = audio_arrays(rows.column(AUDIO))[0]
        errors = self.checked(audio, rows.column(SAMPLE_RATE).to_pylist())
        probs = self.probabilities(audio, errors)
        columns = self.empty_columns(len(audio))
        names = self.model.labels
        if self.label_ids is not None:
            names = [names[k] for k in self.label_ids]
        for i, p in probs.items():
            if self.label_ids is not None:
                p = p[:, self.label_ids]
            columns[task_column(self.name, "segments")][i] = segment(
                p,
                names,
                self.model.frame_duration,
                self.rules,
                duration_s=len(audio[i]) / self.model.sampling_rate,
            )
            columns[task_column(self.name, "model")][i] = self.model.name
        return StageOutput(columns=columns, errors=errors)

    def probabilities(
        self, audio: list[np.ndarray | None], errors: dict[int, RowError] | None = None
    ) -> dict[int, np.ndarray]:
        """Row -> stitched [frames, labels] probabilities, for rows not in `errors`.

        Rows whose window makes the model raise are added to `errors` (a fresh dict when
        none is given).
        """
        errors = {} if errors is None else errors
        step = self.model.samples_per_frame
        windows = [
            Span(i, *b)
            for i, x in enumerate(audio)
            if i not in errors and x is not None
            for b in plan_windows(len(x), self.window, self.overlap, align=step)
        ]
        results = self.run_batched(
            windows,
            lambda batch: self._window_probs([audio[w.row][w.start : w.stop] for w in batch]),
            rows=[w.row for w in windows],
            sizes=[w.samples for w in windows],
            batching=self._batching,
            errors=errors,
        )
        done = [j for j, r in enumerate(results) if r is not None and windows[j].row not in errors]
        per_row: dict[int, list[tuple[Span, np.ndarray]]] = {}
        for j, p in zip(done, _to_host([results[j] for j in done]), strict=True):
            per_row.setdefault(windows[j].row, []).append((windows[j], p))
        return {i: self._stitch(pieces) for i, pieces in per_row.items()}

    def _window_probs(self, audio: list[np.ndarray]) -> list[torch.Tensor]:
        logits = self.model.logits(audio)
        probs = logits.sigmoid() if self.sigmoid else logits.softmax(dim=-1)
        return [probs[k, : self.model.frames(len(a))] for k, a in enumerate(audio)]

    def _stitch(self, pieces: list[tuple[Span, np.ndarray]]) -> np.ndarray:
        step = self.model.samples_per_frame
        spans = [(w.start // step, w.start // step + len(p)) for w, p in pieces]
        kept = kept_ranges(spans)
        return np.concatenate(
            [p[a - g : b - g] for (w, p), (g, _), (a, b) in zip(pieces, spans, kept, strict=True)]
        )


def _to_host(parts: list[torch.Tensor]) -> list[np.ndarray]:
    """Device tensors [frames_i, labels] -> NumPy, with one device-to-host copy in all."""
    if not parts:
        return []
    flat = torch.cat(parts).cpu().numpy()
    return np.split(flat, np.cumsum([len(p) for p in parts])[:-1])
