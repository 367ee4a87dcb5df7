"""Clip-level audio classification (AutoModelForAudioClassification, AST): its task
spec and its entry. The stage is `pipeline.stages.classify`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.kinds.base import CLASSIFICATION_FIELDS, StageKind, TaskBase


class ClassifyTaskSpec(TaskBase):
    """Clip-level audio classification with any AutoModelForAudioClassification checkpoint."""

    kind: Literal["classify"] = "classify"
    top_k: int = Field(5, ge=1, description="Labels kept per item, best first")
    activation: Literal["auto", "softmax", "sigmoid"] = Field(
        "auto",
        description="auto: sigmoid for multi-label models (problem_type), else softmax",
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="Keep only labels scoring at least this"
    )
    window_s: float | None = Field(
        None,
        gt=0,
        description="Window length for long items; default: the model's own (AST: its "
        "max_length of 1024 fbank frames, 10.255 s at 16 kHz), else 30 s. Items up to one "
        "window are classified whole; AST cannot take a longer window",
    )
    window_overlap_s: float = Field(
        0.0,
        ge=0,
        description="Overlap between consecutive windows of a long item; the last window "
        "always ends at the item's end, so it may overlap more",
    )
    pooling: Literal["mean", "max"] = Field(
        "mean", description="How the windows' scores (after the activation) are pooled per label"
    )
    keep_windows: bool = Field(
        False, description="Also write each window's start, end and top labels"
    )
    batch_seconds: float | None = Field(
        None,
        gt=0,
        description="Micro-batch budget: padded audio seconds per forward pass (an AST window "
        "always counts as its full length); default 40 on CPU (small batches stay in cache), "
        "1312 on a GPU (128 AST windows)",
    )

    @model_validator(mode="after")
    def _check_window(self) -> ClassifyTaskSpec:
        if self.window_s is not None and self.window_overlap_s >= self.window_s:
            raise ValueError("window_overlap_s must be less than window_s")
        return self


KIND = StageKind(
    ClassifyTaskSpec,
    "pipeline.stages.classify",
    "ClassifyStage",
    "classifications",
    scored=False,
    fields=CLASSIFICATION_FIELDS,
    needs_input_audio=True,
)
