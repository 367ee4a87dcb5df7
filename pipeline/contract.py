"""The stage contract: what each stage of a plan reads, adds and drops, by column name,
and what one copy of it needs from the cluster.

Each stage has two entries here: its columns (`decode_columns`, `model_columns`,
`score_columns`, `audio_write_columns`) and its resources (`decode_resources`,
`model_resources`, `score_resources`, `audio_write_resources`). Everything is known from
the spec alone (no pyarrow, torch or model load), so `build_plan` takes both from here,
checks the columns, and `validate` prints the checked plan instantly. The stage classes
hold the Arrow types of the same columns; `tests/test_contract.py` checks that every
class's `reads()`/`adds()`/`drops()` say exactly what its entry here says.

`MODEL_STAGES` is every model kind's entry, declared with the kind (`pipeline/kinds/`): a
new kind writing an existing table is its module there and its stage class, nothing here.
The entry also says the kind's role, which the spec's checks read (`scored`: an ASR kind a
round trip may name; `needs_input_audio`; `reads_texts`), so no other module lists kinds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline import column_names as C
from pipeline.errors import SpecError
from pipeline.kinds.base import AUDIO_COLUMNS, TaskBase
from pipeline.kinds.registry import MODEL_STAGES


@dataclass(frozen=True)
class Resources:
    """What one copy of a stage needs from the cluster.

    `actor` stages load something once (a model) and run as a Ray Data actor pool;
    the others run as stateless tasks. `num_gpus` may be a fraction for small models.
    `cpus_from_spec`: the spec chose `num_cpus`, so fitting the plan to the cluster
    (`pipeline/fit.py`) keeps it.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    actor: bool = False
    max_actors: int = 1
    cpus_from_spec: bool = False


@dataclass(frozen=True)
class Columns:
    """The columns a stage needs, the ones it adds, and the ones it removes once used."""

    reads: tuple[str, ...] = ()
    adds: tuple[str, ...] = ()
    drops: tuple[str, ...] = ()


# The per-task fields scoring adds (the names of `schemas.SCORE_COUNTS`).
SCORE_FIELDS = (
    "normalizer",
    "ref_words",
    "substitutions",
    "deletions",
    "insertions",
    "wer",
    "ref_chars",
    "char_edits",
    "cer",
)

# The synthesis round trip, a mapping the sink applies (io/tables.py): a `syntheses` row
# gets the transcript and scores of its `roundtrip_task` (an ASR task of the same job that
# transcribed the synthesized audio): that task's field -> the syntheses column it fills.
ROUNDTRIP = {"text": "transcript"} | {f: f for f in SCORE_FIELDS}

_ERRORS = (C.ERROR_STAGE, C.ERROR_CODE, C.ERROR_MESSAGE)
# What the read step emits: `columns.ITEM_SCHEMA` / `TEXT_ITEM_SCHEMA`, by name.
ITEM_COLUMNS = (
    C.ITEM_ID,
    C.SOURCE_URI,
    C.MEMBER,
    C.SHARD,
    C.AUDIO_BYTES,
    C.REFERENCE,
    C.METADATA,
    C.INPUT_BYTES,
    C.START_S,
    C.END_S,
    C.CHANNELS,
    C.SPAN_CUT,
    *_ERRORS,
)
TEXT_ITEM_COLUMNS = (
    *(
        c
        for c in ITEM_COLUMNS
        if c not in (C.AUDIO_BYTES, C.START_S, C.END_S, C.CHANNELS, C.SPAN_CUT)
    ),
    C.TEXT_ID,
    C.TEXT,
    C.SPEAKER,
    C.SPEAKER_EMBEDDING,
)


def decode_columns() -> Columns:
    return Columns(reads=(C.AUDIO_BYTES,), adds=AUDIO_COLUMNS, drops=(C.AUDIO_BYTES,))


def decode_resources() -> Resources:
    """Decode (and resampling) tasks of one CPU each."""
    return Resources(num_cpus=1)


def model_columns(kind: str, task: str) -> Columns:
    """A task's model stage: what its kind reads, its `{task}__{field}` columns."""
    k = MODEL_STAGES[kind]
    return Columns(reads=k.reads, adds=(*k.adds_shared, *task_fields(kind, task)))


def model_resources(task: TaskBase) -> Resources:
    """A task's actor pool, as its spec sets it: `actors` copies of `num_cpus` CPUs and
    `num_gpus` GPUs each (none for a task pinned to the CPU)."""
    return Resources(
        num_cpus=task.num_cpus,
        # A task pinned to the CPU must not hold a GPU it will not use.
        num_gpus=0 if task.device == "cpu" else task.num_gpus,
        actor=True,
        max_actors=task.actors,
        cpus_from_spec="num_cpus" in task.model_fields_set,
    )


def task_fields(kind: str, task: str) -> tuple[str, ...]:
    return tuple(C.task_column(task, f) for f in MODEL_STAGES[kind].fields)


def score_columns(tasks: Sequence[str]) -> Columns:
    return Columns(
        reads=(C.REFERENCE, *(C.task_column(t, "text") for t in tasks)),
        adds=tuple(C.task_column(t, f) for t in tasks for f in SCORE_FIELDS),
    )


def score_resources() -> Resources:
    """Scoring tasks of half a CPU each: edit counts over texts are light work."""
    return Resources(num_cpus=0.5)


def audio_write_columns(synth_task: str) -> Columns:
    return Columns(
        reads=(C.AUDIO, C.SAMPLE_RATE, C.TEXT_ID), adds=(C.task_column(synth_task, "audio_uri"),)
    )


def audio_write_resources() -> Resources:
    """Tasks of half a CPU each, encoding synthesized audio and writing it out."""
    return Resources(num_cpus=0.5)


def check_columns(stages: Iterable[tuple[str, Columns]], inputs: Iterable[str]) -> None:
    """Every column a stage reads is made by the read step or a stage before it: else a
    SpecError naming the stage, the column, and where it would come from."""
    have = set(inputs)
    for name, cols in stages:
        missing = [c for c in cols.reads if c not in have]
        if missing:
            raise SpecError(
                f"stage {name!r} reads {', '.join(missing)}, which neither the input nor an "
                f"earlier stage makes; {_made_by(missing[0])}"
            )
        have = (have | set(cols.adds)) - set(cols.drops)


def _made_by(column: str) -> str:
    if column in AUDIO_COLUMNS:
        return "audio comes from decoding audio input or from a synthesize task before it"
    if column in TEXT_ITEM_COLUMNS:
        return f"{column!r} comes from input.format: texts"
    task, _, field = column.partition("__")
    return f"{field!r} of task {task!r} comes from that task's stage, which must run earlier"
