"""What a model kind declares: its task spec, built on `TaskBase` (the fields every task
has), and its entry, a `StageKind` (where its stage class lives, the table it writes, its
`{task}__{field}` fields, what it reads, its role).

Light on purpose (pydantic and column names only): the spec, planning and `audiobatch
validate` read every kind's declaration without importing torch or a stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from pipeline import column_names as C
from pipeline.spec_base import SpecModel, StorageOptions

_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

AUDIO_COLUMNS = (C.AUDIO, C.SAMPLE_RATE, C.DURATION_S)  # what decode (or synthesis) adds
# The fields every kind writing a table shares; a kind adds its own after them.
TRANSCRIPT_FIELDS = ("text",)
CLASSIFICATION_FIELDS = ("labels", "windows", "segments", "model")


class TaskBase(SpecModel):
    """The fields every task has, whatever its kind; a kind's spec adds `kind:
    Literal[...]` (its name) and its own settings."""

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

    # The fields naming a checkpoint (hub id, folder or object-storage prefix) and those
    # naming a file or folder the task reads or writes: what the model revision joins and
    # what `submit` checks the cluster can reach (`cluster/paths.py`).
    SOURCE_FIELDS: ClassVar[tuple[str, ...]] = ("model",)
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ()

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        if v is not None and not _TASK_NAME.match(v):
            raise ValueError(
                "must be lowercase letters, digits and '_', starting with a letter (max 40)"
            )
        return v

    def sources(self) -> list[tuple[str, str]]:
        """(field, value) of each checkpoint the task loads, in `SOURCE_FIELDS` order."""
        return [(f, getattr(self, f)) for f in self.SOURCE_FIELDS if getattr(self, f)]

    @property
    def task_name(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StageKind:
    """A task kind: its task spec class, where its stage class lives, which table it
    writes, whether it is scored, the `{task}__{field}` fields it adds, and what it reads
    (and adds unprefixed).

    `scored` kinds transcribe: scoring reads their text, and a synthesis task's
    `roundtrip_task` may name one (`spec.JobSpec`). `needs_input_audio` kinds are refused
    in a texts job: they run on the input's audio, not on synthesized audio."""

    spec: type[TaskBase]
    module: str
    cls: str
    table: str
    scored: bool
    fields: tuple[str, ...]
    reads: tuple[str, ...] = (C.AUDIO, C.SAMPLE_RATE)
    adds_shared: tuple[str, ...] = ()  # unprefixed columns, for the stages downstream
    needs_input_audio: bool = False

    @property
    def reads_texts(self) -> bool:
        """A kind that reads the texts of `input.format: texts` (and makes audio from them)."""
        return C.TEXT in self.reads
