"""CTC transcription (AutoModelForCTC: wav2vec2, HuBERT, WavLM, M-CTC-T, Parakeet):
its task spec and its entry. The stage is `pipeline.stages.ctc`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.kinds.base import TRANSCRIPT_FIELDS, StageKind, TaskBase


class CtcTaskSpec(TaskBase):
    """CTC transcription with any AutoModelForCTC checkpoint."""

    kind: Literal["ctc"] = "ctc"
    batch_seconds: float | None = Field(
        None,
        gt=0,
        description="Micro-batch budget: padded audio seconds per forward pass; default 40 on "
        "CPU (small batches stay in cache: 2.3x faster than 320 s, benchmarks/RESULTS.md), "
        "320 on a GPU",
    )
    chunk_length_s: float = Field(
        30.0, gt=0, description="Audio longer than this is transcribed in overlapping chunks"
    )
    stride_length_s: float | None = Field(
        None, ge=0, description="Overlap on each side of a chunk; default chunk_length_s / 6"
    )
    word_timestamps: bool = Field(
        True, description="Write word start/end times from the CTC alignment"
    )

    @model_validator(mode="after")
    def _check_stride(self) -> CtcTaskSpec:
        if self.stride_length_s is not None and 2 * self.stride_length_s >= self.chunk_length_s:
            raise ValueError("stride_length_s must be less than half of chunk_length_s")
        return self


KIND = StageKind(
    CtcTaskSpec,
    "pipeline.stages.ctc",
    "CtcStage",
    "transcripts",
    scored=True,
    fields=(*TRANSCRIPT_FIELDS, "words", "confidence", "model"),
)
