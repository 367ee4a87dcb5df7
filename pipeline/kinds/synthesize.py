"""Text to speech with SpeechT5: its task spec and its entry. The stage is
`pipeline.stages.synthesize`; the synthesized audio is what the ASR tasks after it
transcribe (the round trip).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline import column_names as C
from pipeline.kinds.base import AUDIO_COLUMNS, StageKind, TaskBase


class SynthesizeTaskSpec(TaskBase):
    """Text to speech with SpeechT5 (SpeechT5ForTextToSpeech + SpeechT5HifiGan)."""

    SOURCE_FIELDS = ("model", "vocoder")
    PATH_FIELDS = ("speaker_embeddings", "audio_uri")

    kind: Literal["synthesize"] = "synthesize"
    vocoder: str = Field(
        "microsoft/speecht5_hifigan",
        description="HiFi-GAN vocoder: hub id, local folder or object-storage prefix",
    )
    speaker_embeddings: str | None = Field(
        None,
        description="A .npy file ([512] or [speakers, 512]) or a JSONL/CSV/Parquet table of "
        "speaker ids and 512-dim x-vectors, for rows that name a speaker or give none",
    )
    speaker: str | None = Field(
        None,
        description="Default speaker for rows without one: an id in `speaker_embeddings` (a row "
        "index for a 2-D .npy); unset: its only row, or a neutral all-zero embedding without a file",
    )
    language: str = Field(
        "en", description="Language of the texts; numbers and symbols are spelled out for 'en' only"
    )
    stop_threshold: float = Field(
        0.5,
        gt=0,
        description="A piece ends when its summed stop probabilities reach this (per decoder step)",
    )
    minlenratio: float = Field(
        0.0, ge=0, description="Minimum decoder steps per input token (x reduction factor 2)"
    )
    maxlenratio: float = Field(
        20.0,
        gt=0,
        description="Maximum decoder steps per input token (x reduction factor 2); a piece that "
        "reaches it without stopping is flagged as a runaway",
    )
    max_chars: int = Field(
        250,
        ge=20,
        le=400,
        description="Texts longer than this are split at sentence ends (then commas, spaces) "
        "into pieces of at most this many characters, synthesized apart and joined",
    )
    pause_s: float = Field(
        0.2, ge=0, le=5, description="Silence inserted between the pieces of one text"
    )
    seed: int = Field(
        0,
        ge=0,
        description="Seed of the decoder prenet's dropout; with the text id it fixes each "
        "item's audio whatever else is in its batch",
    )
    audio_format: Literal["flac", "wav"] = Field(
        "flac", description="Container of the written audio files (16-bit PCM)"
    )
    batch_size: int = Field(
        256,
        ge=1,
        description="Rows handed to one actor call (their pieces are sorted and micro-batched)",
    )
    roundtrip_task: str | None = Field(
        None,
        description="Name of an ASR task (ctc or whisper) in this job that transcribes the "
        "synthesized audio; its transcript and WER/CER against the input text go into `syntheses`",
    )
    audio_uri: str | None = Field(
        None,
        description="Folder or object-storage prefix for the audio files; default "
        "`<output.uri>/audio/<task>`. Keys come from the text id, so a re-run overwrites",
    )
    batch_pieces: int = Field(
        256,
        ge=1,
        description="Sentence pieces decoded together in one micro-batch (a GPU needs hundreds: "
        "decoding is launch-bound)",
    )


# The signal measures synthesis adds per item (metrics/signal.py), which its report summarises.
SIGNAL_FIELDS = (
    "chars_per_s",
    "leading_silence_s",
    "trailing_silence_s",
    "silence_share",
    "clipping_share",
    "rms_dbfs",
)

KIND = StageKind(
    SynthesizeTaskSpec,
    "pipeline.stages.synthesize",
    "SynthesizeStage",
    "syntheses",
    scored=False,
    fields=(
        "normalized_text",
        "n_frames",
        "runaway",
        "empty",
        "model",
        *SIGNAL_FIELDS,
    ),
    reads=(C.TEXT_ID, C.TEXT, C.SPEAKER, C.SPEAKER_EMBEDDING),
    adds_shared=AUDIO_COLUMNS,  # the ASR tasks downstream transcribe what it spoke
)
