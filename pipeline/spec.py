"""The job spec: a YAML file validated into typed config before any work starts.

Nothing here imports torch, ray or transformers, so `audiobatch validate` is
instant. Every field is documented where it is declared; `schemas/job_spec.schema.json`
is generated from these models (`audiobatch schema`) and checked in tests. Each task
kind's spec lives with its kind (`pipeline/kinds/<kind>.py`); `TaskSpec` is their union.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from functools import reduce
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.errors import SpecError
from pipeline.kinds.registry import MODEL_STAGES
from pipeline.spec_base import SpecModel as _Model
from pipeline.spec_base import StorageOptions


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


# Every kind's task spec (`pipeline/kinds/`), told apart by `kind`.
TaskSpec = Annotated[
    reduce(operator.or_, (k.spec for k in MODEL_STAGES.values())),
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
        texts_in = [t.kind for t in self.tasks if MODEL_STAGES[t.kind].reads_texts]
        if (self.input.format == "texts") != bool(texts_in) or len(texts_in) > 1:
            text_kinds = " or ".join(k for k, kind in MODEL_STAGES.items() if kind.reads_texts)
            raise ValueError(
                f"input.format: texts goes with one `kind: {text_kinds}` task (texts in, audio "
                f"out), and a {text_kinds} task needs input.format: texts"
            )
        asr_kinds = [k for k, kind in MODEL_STAGES.items() if kind.scored]
        asr = {t.task_name for t in self.tasks if t.kind in asr_kinds}
        for t in self.tasks:
            roundtrip = getattr(t, "roundtrip_task", None)
            if roundtrip and roundtrip not in asr:
                raise ValueError(
                    f"task {t.task_name}: roundtrip_task {roundtrip!r} must name a "
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
