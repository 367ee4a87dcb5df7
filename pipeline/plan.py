"""From a validated job spec to the ordered list of stages the runner executes.

The plan names each stage's class by import path, so planning imports no torch,
transformers or pyarrow; the class is imported where the stage runs (a Ray worker or
actor). Each stage's columns and resources come from its entries in `pipeline/contract.py`,
and the plan is checked: every column a stage reads is made upstream (`stage_plans`, which
`validate` prints with each stage's resources).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline import contract
from pipeline.column_names import AUDIO
from pipeline.contract import MODEL_STAGES, Columns, Resources
from pipeline.errors import SpecError
from pipeline.spec import JobSpec

if TYPE_CHECKING:
    from pipeline.io.tables import TaskInfo
    from pipeline.stages.base import Stage


@dataclass(frozen=True)
class StageFactory:
    """A picklable recipe for a stage: import `module.cls` and call it with `kwargs`."""

    module: str
    cls: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Stage:
        return getattr(importlib.import_module(self.module), self.cls)(**self.kwargs)


@dataclass(frozen=True)
class StagePlan:
    name: str
    factory: StageFactory
    resources: Resources
    batch_size: int | None  # None: one upstream block per call (keeps writes small and frequent)
    columns: Columns = Columns()

    @property
    def uses_audio(self) -> bool:
        """False: the decoded audio can be dropped before this stage."""
        return AUDIO in self.columns.reads


@dataclass(frozen=True)
class Plan:
    stages: list[StagePlan]
    tasks: list[TaskInfo]
    sample_rate: int

    @property
    def revisions(self) -> dict[str, str | None]:
        """Task name -> its model's resolved revision (None: not resolved for this plan)."""
        return {t.name: t.revision for t in self.tasks}


def build_plan(spec: JobSpec, revisions: dict[str, str] | None = None) -> Plan:
    """The checked stages (`stage_plans`) and what the sink needs to know of each task.

    `revisions` (task name -> resolved model revision, pipeline/models/revision.py) go into
    every row the task writes, and pin each model to that revision where it is loaded."""
    from pipeline.io.tables import TaskInfo

    revisions = revisions or {}
    tasks = [
        TaskInfo(
            t.task_name,
            t.kind,
            t.model,
            MODEL_STAGES[t.kind].table,
            roundtrip=getattr(t, "roundtrip_task", None),
            revision=revisions.get(t.task_name),
        )
        for t in spec.tasks
    ]
    if revisions:
        spec = spec.model_copy(update={"tasks": [_pinned(t, revisions) for t in spec.tasks]})
    return Plan(stage_plans(spec), tasks, spec.tasks[0].sample_rate)


def _pinned(task, revisions: dict[str, str]):
    """`task` loading its model at the resolved revision: a hub commit is handed to
    `from_pretrained`; an object-storage model's cache copy is keyed by it (so changed
    objects are copied again). A local folder is loaded in place whatever it says."""
    revision = revisions.get(task.task_name, "").split("+")[0]
    if not revision or revision.startswith("sha256:"):
        return task
    return task.model_copy(update={"revision": revision})


def stage_plans(spec: JobSpec) -> list[StagePlan]:
    """decode -> one model stage per task -> score (when any task produces text).

    A `texts` job has no decode: synthesize -> write its audio -> the ASR tasks, which
    transcribe the synthesized audio -> score against the input text. Raises SpecError
    when a stage reads a column that neither the input nor an earlier stage makes.
    """
    rate = spec.tasks[0].sample_rate
    synth = next((t for t in spec.tasks if MODEL_STAGES[t.kind].reads_texts), None)
    stages = _synthesis_stages(spec, synth) if synth else [_decode_stage(spec, rate)]
    scored = []
    for task in spec.tasks:
        if task is not synth:
            stages.append(_model_stage(spec, task))
        if MODEL_STAGES[task.kind].scored:
            scored.append(task.task_name)
    if scored:
        stages.append(
            StagePlan(
                "score",
                StageFactory(
                    "pipeline.stages.score",
                    "ScoreStage",
                    {"tasks": scored, "normalizer": spec.scoring.normalizer},
                ),
                contract.score_resources(),
                None,
                contract.score_columns(scored),
            )
        )
    inputs = contract.TEXT_ITEM_COLUMNS if synth else contract.ITEM_COLUMNS
    contract.check_columns(((s.name, s.columns) for s in stages), inputs)
    return stages


def _decode_stage(spec: JobSpec, rate: int) -> StagePlan:
    return StagePlan(
        "decode",
        StageFactory(
            "pipeline.stages.decode",
            "DecodeStage",
            {"limits": spec.decode, "target_rate": rate},
        ),
        contract.decode_resources(),
        spec.runtime.decode_batch_size,
        contract.decode_columns(),
    )


def _model_stage(spec: JobSpec, task) -> StagePlan:
    kind = MODEL_STAGES[task.kind]
    if importlib.util.find_spec(kind.module) is None:
        raise SpecError(f"task kind {task.kind!r} is not available in this version")
    storage = task.storage or spec.input.storage
    return StagePlan(
        task.task_name,
        StageFactory(kind.module, kind.cls, {"spec": task, "storage": storage}),
        contract.model_resources(task),
        task.batch_size,
        contract.model_columns(task.kind, task.task_name),
    )


def _synthesis_stages(spec: JobSpec, synth) -> list[StagePlan]:
    """The synthesis actor pool, then CPU tasks writing its audio under stable keys."""
    from pipeline.io.storage import join

    root = synth.audio_uri or join(spec.output.uri, "audio", synth.task_name)
    write = StagePlan(
        f"{synth.task_name}_write",
        StageFactory(
            "pipeline.stages.audio_write",
            "AudioWriteStage",
            {
                "task": synth.task_name,
                "root": root,
                "storage": spec.output.storage,
                "fmt": synth.audio_format,
            },
        ),
        contract.audio_write_resources(),
        None,
        contract.audio_write_columns(synth.task_name),
    )
    return [_model_stage(spec, synth), write]


def describe(stages: list[StagePlan]) -> list[str]:
    """The checked plan as lines for `validate`: each stage's resources and columns."""
    lines = []
    for s in stages:
        lines.append(f"{s.name}: {_resources(s)}")
        lines.append(f"    reads {_names(s.columns.reads)}")
        lines.append(f"    adds  {_names(s.columns.adds)}")
        if s.columns.drops:
            lines.append(f"    drops {_names(s.columns.drops)}")
    last = last_audio_reader(stages)
    if last is not None:
        lines.append(f"decoded audio is dropped after {last.name}")
    return lines


def last_audio_reader(stages: list[StagePlan]) -> StagePlan | None:
    """The last stage that reads the decoded audio: the runner drops it after this one."""
    return next((s for s in reversed(stages) if s.uses_audio), None)


def _resources(stage: StagePlan) -> str:
    r = stage.resources
    each = f"{r.num_cpus:g} CPU" + (f" + {r.num_gpus:g} GPU" if r.num_gpus else "")
    if not r.actor:
        return f"tasks of {each}"
    pool = "1 actor" if r.max_actors == 1 else f"up to {r.max_actors} actors"
    batch = f", batches of {stage.batch_size}" if stage.batch_size else ""
    fitted = "" if r.cpus_from_spec else " (CPUs fitted to the cluster at run time)"
    return f"{pool} of {each}{batch}{fitted}"


def _names(columns: tuple[str, ...]) -> str:
    """Columns as `a, t__{x, y}, {u, v}__{x, y}`: task columns grouped by task, and tasks
    with the same fields grouped together, in order."""
    fields: dict[str, list[str]] = {}
    for c in columns:
        task, sep, name = c.rpartition("__")
        if sep:
            fields.setdefault(task, []).append(name)
        else:
            fields.setdefault(c, [])
    same: dict[tuple[str, ...], list[str]] = {}
    for task, names in fields.items():
        same.setdefault(tuple(names), []).append(task)
    return ", ".join(_group(tasks, names) for names, tasks in same.items()) or "nothing"


def _group(tasks: list[str], names: tuple[str, ...]) -> str:
    if not names:
        return ", ".join(tasks)
    head = tasks[0] if len(tasks) == 1 else "{" + ", ".join(tasks) + "}"
    tail = names[0] if len(names) == 1 else "{" + ", ".join(names) + "}"
    return f"{head}__{tail}"
