"""Frame classification into labelled segments
(AutoModelForAudioFrameClassification): its task spec and its entry. The stage is
`pipeline.stages.frames`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipeline.kinds.base import CLASSIFICATION_FIELDS, StageKind, TaskBase


class FramesTaskSpec(TaskBase):
    """Frame classification (AutoModelForAudioFrameClassification) into labelled segments."""

    kind: Literal["frames"] = "frames"
    activation: Literal["auto", "softmax", "sigmoid"] = Field(
        "auto", description="auto: sigmoid for multi-label models (problem_type), else softmax"
    )
    threshold: float = Field(
        0.5, ge=0, le=1, description="A frame carries a label when its probability reaches this"
    )
    labels: tuple[str, ...] | None = Field(
        None, description="Only segment these labels (default: all of the model's labels)"
    )
    smoothing_frames: int = Field(
        1,
        ge=1,
        description="Width of a centred running median over frame probabilities, odd (1: none)",
    )
    min_segment_s: float = Field(
        0.0, ge=0, description="Drop segments shorter than this (after merging)"
    )
    merge_gap_s: float = Field(
        0.0, ge=0, description="Join segments of one label separated by less than this"
    )
    window_s: float = Field(30.0, gt=0, description="Long audio is processed in windows this long")
    window_overlap_s: float = Field(
        2.0,
        ge=0,
        description="Overlap between windows; each side keeps half of it (at least one frame, "
        "whatever is set, so every frame is computed)",
    )
    batch_seconds: float | None = Field(
        None,
        gt=0,
        description="Micro-batch budget: padded audio seconds per forward pass; default 40 on "
        "CPU, 1312 on a GPU",
    )

    @field_validator("smoothing_frames")
    @classmethod
    def _check_smoothing(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd, so the median filter stays centred on its frame")
        return v

    @model_validator(mode="after")
    def _check_window(self) -> FramesTaskSpec:
        if self.window_overlap_s * 2 >= self.window_s:
            raise ValueError("window_overlap_s must be less than half of window_s")
        return self


KIND = StageKind(
    FramesTaskSpec,
    "pipeline.stages.frames",
    "FramesStage",
    "classifications",
    scored=False,
    fields=CLASSIFICATION_FIELDS,
    needs_input_audio=True,
)
