"""Whisper-family transcription: its task spec and its entry. The stage is
`pipeline.stages.whisper`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pipeline.kinds.base import TRANSCRIPT_FIELDS, StageKind, TaskBase


class WhisperTaskSpec(TaskBase):
    """Whisper-family transcription (WhisperForConditionalGeneration: large-v3, turbo, distil)."""

    kind: Literal["whisper"] = "whisper"
    batch_size: int = Field(
        256, ge=1, description="Rows handed to one actor call (they are sorted and micro-batched)"
    )
    micro_batch: int | None = Field(
        None,
        ge=1,
        description="Items per generate call (short-form), or windows of different items per "
        "long-form step; default 16 on CPU (a batch decodes until its longest transcript "
        "ends), 64 on a GPU. Decoding is launch-bound on a GPU: larger is faster while memory "
        "lasts (256 for large-v3-turbo on an 80+ GB GPU)",
    )
    language: str | None = Field(
        None,
        description="Fixed language (a code like en, a name like english, or <|en|>); None "
        "detects it per item, on its first 30 s, and writes its probability",
    )
    task: Literal["transcribe", "translate"] = Field("transcribe", description="Whisper task")
    timestamps: Literal["none", "segment", "word"] = Field(
        "none",
        description="none; segment: segments with start/end; word: also word times (cross-attention "
        "alignment). Long-form items (over 30 s) always get segments",
    )
    num_beams: int = Field(1, ge=1, le=16, description="1: greedy (the default); >1: beam search")
    max_new_tokens: int = Field(
        440, ge=1, le=448, description="Upper bound on generated tokens per 30 s window"
    )
    temperatures: tuple[float, ...] = Field(
        (0.0,),
        min_length=1,
        description="Temperature fallback schedule, e.g. [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]; a "
        "window is decoded again at the next one while a threshold below fails (OpenAI's rule)",
    )
    compression_ratio_threshold: float | None = Field(
        2.4,
        gt=0,
        description="Fallback when a window's text compresses better than this (zlib ratio of "
        "its UTF-8 bytes, OpenAI's measure); also the item's high_compression flag",
    )
    logprob_threshold: float | None = Field(
        -1.0,
        description="Fallback when a window's average token log-probability is below it; a "
        "window is silence only when its log-probability is not above it",
    )
    no_speech_threshold: float | None = Field(
        0.6,
        ge=0,
        le=1,
        description="A window is silence (its text dropped) when its no-speech probability "
        "exceeds this and its log-probability is not above logprob_threshold; also the "
        "no_speech_text flag",
    )
    prompt: str | None = Field(
        None,
        description="Text given to every 30 s window as previous context (<|startofprev|>), "
        "e.g. names and spellings to prefer",
    )
    seed: int = Field(
        0,
        description="Seed for sampling at temperatures above 0; with each item's own samples, "
        "so an item samples the same tokens in any batch",
    )

    @field_validator("temperatures")
    @classmethod
    def _check_temperatures(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(t < 0 for t in v):
            raise ValueError("temperatures must be 0 (greedy or beam search) or above (sampling)")
        return v


KIND = StageKind(
    WhisperTaskSpec,
    "pipeline.stages.whisper",
    "WhisperStage",
    "transcripts",
    scored=True,
    fields=(
        *TRANSCRIPT_FIELDS,
        "language",
        "language_prob",
        "segments",
        "words",
        "avg_logprob",
        "no_speech_prob",
        "compression_ratio",
        "flags",
        "confidence",
        "model",
    ),
)
