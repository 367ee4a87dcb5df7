"""The job spec: a YAML file validated into typed config before any work starts.

Nothing here imports torch, ray or transformers, so `audiobatch validate` is
instant. Every field is documented where it is declared; `schemas/job_spec.schema.json`
is generated from these models (`audiobatch schema`) and checked in tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.contract import MODEL_STAGES
from pipeline.errors import SpecError

_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageOptions(_Model):
    """Filesystem options for object storage. Credentials are never taken here:
    they come from the usual AWS/GCP chain (environment, profile, instance role)."""

    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000"
    )
    region: str | None = Field(None, description="Object-storage region")
    anon: bool = Field(False, description="Anonymous (unsigned) access, for public buckets")
    timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Most seconds one object may take, connects, reads and retries together: an "
        "input file past it becomes a read_failed row, an output write past it fails the run. "
        "The first contact with the storage is bounded by the smaller of this and 30 s",
    )


class WebDatasetOptions(_Model):
    """How WebDataset tar members are grouped into samples."""

    key: Literal["first_dot", "full"] = Field(
        "first_dot",
        description="first_dot: a sample is the members sharing the basename up to its first "
        "dot (WebDataset's own rule: spk0.utt000.flac is sample spk0); full: up to the last dot, "
        "so each spk0.uttNNN.flac is its own item",
    )


class InputSpec(_Model):
    """Where the audio comes from."""

    uri: str = Field(description="Local path, glob, s3://, gs:// or any fsspec URI of the shards")
    format: Literal["files", "webdataset", "parquet", "texts"] | None = Field(
        None,
        description="Shard format; detected from the listed files when omitted. `texts`: "
        "JSONL/CSV/Parquet tables of texts to synthesize (kind: synthesize)",
    )
    manifest: str | None = Field(
        None,
        description="files format only: JSONL/CSV/TSV/Parquet (optionally .gz) with `path` (or "
        "NeMo's `audio_filepath`; relative to uri or absolute), optional `text` and any metadata; "
        "a NeMo line with `offset`/`duration`, or a lhotse supervisions manifest, makes each "
        "line one item covering that span of its file",
    )
    manifest_quoting: Literal["auto", "csv", "none"] = Field(
        "auto",
        description="Quote processing of CSV/TSV manifests. auto: quotes in .csv, none in .tsv "
        "(Common Voice TSVs are unquoted: a sentence may begin with a quote)",
    )
    recordings: str | None = Field(
        None,
        description="lhotse: the recordings manifest of the supervisions in `manifest` (default: "
        "its name with `supervisions` replaced by `recordings`)",
    )
    references: Literal["librispeech"] | None = Field(
        None,
        description="files format: where references come from besides a manifest. librispeech: "
        "the `*.trans.txt` files beside the audio (`UTTERANCE-ID TEXT` lines)",
    )
    webdataset: WebDatasetOptions = Field(default_factory=WebDatasetOptions)
    storage: StorageOptions = Field(default_factory=StorageOptions)
    allow_outside_paths: bool = Field(
        False,
        description="files format: let a manifest name files outside `uri` (and symlinks lead "
        "there); parquet format: let an audio struct's `path` point outside `uri`. Off, such "
        "paths are invalid_input error rows. /proc, /sys and /dev are never read",
    )
    audio_column: str = Field(
        "audio",
        description="parquet format: the column holding the {bytes, path} struct or raw bytes",
    )
    text_column: str | None = Field(
        "text",
        description="The reference: the Parquet column, the manifest column, the WebDataset JSON "
        "field (when there is no .txt member), if present; texts format: the text",
    )
    id_column: str = Field(
        "id",
        description="texts format: the column holding each text's id. files (manifest, lhotse "
        "supervisions) and parquet formats, only when set: the column whose values are the "
        "item ids, kept as the user wrote them (a repeated one is a duplicate_id error row)",
    )
    speaker_column: str = Field(
        "speaker", description="texts format: optional column naming each text's speaker"
    )
    embedding_column: str = Field(
        "speaker_embedding",
        description="texts format: optional column holding a 512-dim speaker embedding",
    )
    extensions: tuple[str, ...] = Field(
        ("wav", "flac", "ogg", "opus", "mp3", "m4a", "aac", "webm", "mp4"),
        description="files format: which file endings count as audio",
    )
    limit: int | None = Field(
        None, ge=1, description="Process at most this many items (for trials)"
    )


class DecodeSpec(_Model):
    """How audio is decoded and what is refused before decoding."""

    max_duration_s: float = Field(
        3600.0, gt=0, description="Refuse items whose header says they are longer"
    )
    max_file_mb: float = Field(512.0, gt=0, description="Refuse files larger than this")
    min_duration_s: float = Field(
        0.0, ge=0, description="Refuse items shorter than this (after decode)"
    )
    max_batch_mb: float = Field(
        512.0,
        gt=0,
        description="Decoded audio one decode task holds before it hands its rows on: a batch is "
        "cut into blocks at this size (a block may pass it by one item, itself capped by "
        "max_duration_s), so files that decode to far more than their size (7 KB declaring "
        "an hour at 1 Hz is 220 MiB at 16 kHz) cannot exhaust memory",
    )
    truncation_tolerance: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Flag an item as truncated when it decodes to less than this share of its declared length",
    )


class _TaskBase(_Model):
    name: str | None = Field(
        None,
        description="Task name (lowercase, a-z0-9_); defaults to the kind. Names the output partition",
    )
    model: str = Field(
        description="Hugging Face hub id, local folder, or object-storage prefix holding the checkpoint"
    )
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit) when `model` is a hub id"
    )
    trust_remote_code: bool = Field(
        False, description="Allow code shipped with the checkpoint to run"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: cuda when a GPU is visible to the actor"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: float32 on CPU, bfloat16 on GPU"
    )
    num_gpus: float = Field(
        1.0, ge=0, le=8, description="GPUs per actor when GPUs exist (a fraction shares one)"
    )
    num_cpus: float = Field(1.0, gt=0, description="CPUs per actor")
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads of an actor running on CPU; default: its num_cpus. More than "
        "num_cpus lets the model use cores that light decode tasks leave idle",
    )
    actors: int = Field(1, ge=1, description="Actor pool size (model copies)")
    batch_size: int = Field(64, ge=1, description="Rows handed to one actor call")
    sample_rate: int = Field(
        16000, ge=8000, le=48000, description="Rate the model expects; audio is resampled to it"
    )
    storage: StorageOptions | None = Field(
        None, description="Storage options for an object-storage `model`; defaults to input.storage"
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        if v is not None and not _TASK_NAME.match(v):
            raise ValueError(
                "must be lowercase letters, digits and '_', starting with a letter (max 40)"
            )
        return v

    @property
    def task_name(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]


class CtcTaskSpec(_TaskBase):
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


class WhisperTaskSpec(_TaskBase):
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


class ClassifyTaskSpec(_TaskBase):
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


class FramesTaskSpec(_TaskBase):
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


class SynthesizeTaskSpec(_TaskBase):
    """Text to speech with SpeechT5 (SpeechT5ForTextToSpeech + SpeechT5HifiGan)."""

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


TaskSpec = Annotated[
    CtcTaskSpec | WhisperTaskSpec | ClassifyTaskSpec | FramesTaskSpec | SynthesizeTaskSpec,
    Field(discriminator="kind"),
]


class ScoringSpec(_Model):
    """How transcripts are scored against references."""

    normalizer: Literal["basic", "whisper_english", "none"] = Field(
        "basic",
        description="Text normaliser applied to both reference and hypothesis; named in the output",
    )


class OutputSpec(_Model):
    """Where the tables and the report go."""

    uri: str = Field(description="Local folder or object-storage prefix for the tables")
    storage: StorageOptions = Field(default_factory=StorageOptions)
    lease_ttl_s: float = Field(
        300.0,
        ge=2,
        description="One run at a time per output: a run holds a lease in `_lease/`, renewed "
        "every third of this; a run killed without releasing it blocks the output this long",
    )


class ReportSpec(_Model):
    """What report.html / report.json show (`pipeline.reports`)."""

    group_by: list[str] = Field(
        default_factory=lambda: ["speaker"],
        description="Manifest metadata columns to break WER down by (a column no item has is "
        "named in the report as absent); shards and duration buckets are always shown",
    )
    bootstrap_resamples: int = Field(
        1000, ge=1, le=100_000, description="Bootstrap resamples for confidence intervals"
    )
    seed: int = Field(0, ge=0, description="Seed of the bootstrap and of the alignment sample")
    worst_items: int = Field(20, ge=0, le=1000, description="Worst items shown with alignments")
    alignment_items: int = Field(
        10_000,
        ge=0,
        description="At most this many scored items (a seeded sample) are re-aligned for the "
        "confusion pairs, deletions and insertions; all of them when there are fewer",
    )
    max_groups: int = Field(100, ge=1, description="At most this many groups per breakdown")

    @field_validator("group_by")
    @classmethod
    def _metadata_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", n)]
        if bad:
            raise ValueError(f"group_by names metadata columns (letters, digits, _ . -): {bad}")
        return names


class RuntimeSpec(_Model):
    """Where and how the job runs."""

    address: str | None = Field(None, description="Ray address; None starts (or joins) a local Ray")
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs for a Ray started by audiobatch (default: all)"
    )
    read_batch_items: int = Field(32, ge=1, description="Items per read block")
    decode_batch_size: int = Field(16, ge=1, description="Items per decode task call")
    progress_interval_s: float = Field(5.0, gt=0, description="Seconds between progress lines")
    max_error_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="`run` exits with code 4 (after writing everything) when more than this "
        "share of this run's items failed, printing the top error codes with an example each",
    )


class IncrementalSpec(_Model):
    """What a nightly run does about sources that changed since they were processed."""

    reprocess_changed: bool = Field(
        False,
        description="Process again the items of a source (file or shard) whose size or "
        "etag/mtime changed since it was processed; the newer rows supersede the older in "
        "the views (`latest`). Off: changed sources are only listed (run record, report)",
    )


class JobSpec(_Model):
    """A whole job: input, the tasks run on every item, scoring, output."""

    name: str = Field(description="Job name, recorded in the runs table")
    input: InputSpec
    decode: DecodeSpec = Field(default_factory=DecodeSpec)
    tasks: list[TaskSpec] = Field(min_length=1, description="Model tasks; they share one decode")
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    output: OutputSpec
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    incremental: IncrementalSpec = Field(default_factory=IncrementalSpec)
    schedule: str | None = Field(
        None,
        description="When the job should run, as cron ('0 2 * * *': every night at 02:00, or "
        "@daily, @hourly, ...). Carried out by the cluster's scheduler (`render k8s`) or a "
        "crontab line; `audiobatch run` runs once, now; `validate` prints the next runs",
    )
    timezone: str = Field("UTC", description="IANA time zone of `schedule`, e.g. Europe/Berlin")

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: str | None) -> str | None:
        from pipeline.schedule import check_cron

        return None if v is None else check_cron(v)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, v: str) -> str:
        from pipeline.schedule import check_timezone

        return check_timezone(v)

    @model_validator(mode="after")
    def _unique_task_names(self) -> JobSpec:
        names = [t.task_name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"task names must be unique; give each task a `name` (duplicated: {', '.join(dupes)})"
            )
        kinds = [t.kind for t in self.tasks]
        if (self.input.format == "texts") != ("synthesize" in kinds) or kinds.count(
            "synthesize"
        ) > 1:
            raise ValueError(
                "input.format: texts goes with one `kind: synthesize` task (texts in, audio out), "
                "and a synthesize task needs input.format: texts"
            )
        asr_kinds = [k for k, kind in MODEL_STAGES.items() if kind.scored]
        asr = {t.task_name for t in self.tasks if t.kind in asr_kinds}
        for t in self.tasks:
            if t.kind == "synthesize" and t.roundtrip_task and t.roundtrip_task not in asr:
                raise ValueError(
                    f"task {t.task_name}: roundtrip_task {t.roundtrip_task!r} must name a "
                    f"{' or '.join(asr_kinds)} task of this job "
                    f"(have: {', '.join(sorted(asr)) or 'none'})"
                )
            if MODEL_STAGES[t.kind].needs_input_audio and self.input.format == "texts":
                raise ValueError(f"task {t.task_name}: a {t.kind} task needs audio input")
        rates = sorted({t.sample_rate for t in self.tasks})
        if len(rates) > 1:
            raise ValueError(
                f"tasks in one job share one decode and must use one sample_rate (got {rates})"
            )
        return self

    def input_hash(self) -> str:
        """A hash of what decides how the input is read and decoded: a shard that failed
        as a whole (e.g. a missing audio column) is retried once this changes."""
        blob = json.dumps(
            {
                "input": self.input.model_dump(mode="json"),
                "decode": self.decode.model_dump(mode="json"),
            },
            sort_keys=True,
        ).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def spec_hash(self) -> str:
        """A stable hash of the validated spec (recorded with each run)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def parse_spec(data: Any, source: str = "<spec>") -> JobSpec:
    """Validate a parsed mapping, turning pydantic's errors into one readable SpecError."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a job spec must be a mapping at the top level")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(
                f"  {where}: {err['msg']}"
                + (f" (got {err['input']!r})" if _short(err.get("input")) else "")
            )
        raise SpecError(f"{source}: invalid job spec\n" + "\n".join(lines)) from None


# A spec is a page of YAML; megabytes of it are a mistake (a pasted item list) or an attack,
# and parsing 6 MB took 42 s and 1.2 GB. Refused before parsing.
MAX_SPEC_BYTES = 1 << 20


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read and validate a YAML job spec; `overrides` are dotted keys, e.g. {"output.uri": "/tmp/o"}
    or {"tasks.0.batch_size": 2} (a number indexes a list)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{p}: no such job spec") from None
    except OSError as exc:
        raise SpecError(f"{p}: could not read the job spec: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{p}: a job spec may be at most {MAX_SPEC_BYTES // 1024} KiB; list items in a "
            "manifest (input.manifest), not in the spec"
        )
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {exc}") from None
    if overrides and not isinstance(data, dict):
        raise SpecError(f"{p}: a job spec must be a mapping at the top level")
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return parse_spec(data, str(p))


def _set_dotted(data: dict, key: str, value: Any) -> None:
    """Set `value` at a dotted path: names index mappings (created when missing), numbers
    index existing list items. Anything else is refused with the path that went wrong."""
    parts = key.split(".")
    if not all(parts):
        raise SpecError(f"--set {key}: empty field name in the dotted key")
    node: Any = data
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth]) or "the spec"
        last = depth == len(parts) - 1
        if isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(
                    f"--set {key}: {here} is a list of {len(node)} items; index it with "
                    f"0..{len(node) - 1}, not {part!r}"
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            raise SpecError(
                f"--set {key}: {here} is a {type(node).__name__} ({node!r:.40}), not a mapping "
                f"or list, so it has no field {part!r}"
            )


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) < 80


def json_schema() -> dict:
    """The JSON Schema of a job spec (what `schemas/job_spec.schema.json` holds)."""
    schema = JobSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "audiobatch job spec"
    return schema
