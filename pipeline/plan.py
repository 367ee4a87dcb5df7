"""From a validated job spec to the ordered list of stages the runner executes.

The plan names each stage's class by import path, so planning imports no torch or
transformers; the class is imported where the stage runs (a Ray worker or actor).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import SpecError
from pipeline.io.tables import TaskInfo
from pipeline.spec import JobSpec
from pipeline.stages.base import Resources, Stage


@dataclass(frozen=True)
class StageKind:
    """Where a task kind's stage class lives, which table it writes, whether it is scored."""

    module: str
    cls: str
    table: str
    scored: bool


MODEL_STAGES: dict[str, StageKind] = {
    "ctc": StageKind("pipeline.stages.ctc", "CtcStage", "transcripts", scored=True),
    "whisper": StageKind("pipeline.stages.whisper", "WhisperStage", "transcripts", scored=True),
    "classify": StageKind(
        "pipeline.stages.classify", "ClassifyStage", "classifications", scored=False
    ),
    "frames": StageKind("pipeline.stages.frames", "FramesStage", "classifications", scored=False),
    "synthesize": StageKind(
        "pipeline.stages.synthesize", "SynthesizeStage", "syntheses", scored=False
    ),
}


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
    uses_audio: bool = True  # False: the decoded audio can be dropped before this stage
    cpus_from_spec: bool = False  # the spec set num_cpus: fitting to the cluster keeps it


@dataclass(frozen=True)
class Plan:
    stages: list[StagePlan]
    tasks: list[TaskInfo]
    sample_rate: int


def build_plan(spec: JobSpec) -> Plan:
    """decode -> one model stage per task -> score (when any task produces text).

    A `texts` job has no decode: synthesize -> write its audio -> the ASR tasks, which
    transcribe the synthesized audio -> score against the input text.
    """
    rate = spec.tasks[0].sample_rate
    synth = next((t for t in spec.tasks if t.kind == "synthesize"), None)
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
                Resources(num_cpus=0.5),
                None,
                uses_audio=False,
            )
        )
    tasks = [
        TaskInfo(
            t.task_name,
            t.kind,
            t.model,
            MODEL_STAGES[t.kind].table,
            roundtrip=getattr(t, "roundtrip_task", None),
        )
        for t in spec.tasks
    ]
    return Plan(stages, tasks, rate)


def _decode_stage(spec: JobSpec, rate: int) -> StagePlan:
    return StagePlan(
        "decode",
        StageFactory(
            "pipeline.stages.decode",
            "DecodeStage",
            {"limits": spec.decode, "target_rate": rate},
        ),
        Resources(num_cpus=1),
        spec.runtime.decode_batch_size,
    )


def _model_stage(spec: JobSpec, task) -> StagePlan:
    kind = MODEL_STAGES[task.kind]
    if importlib.util.find_spec(kind.module) is None:
        raise SpecError(f"task kind {task.kind!r} is not available in this version")
    storage = task.storage or spec.input.storage
    return StagePlan(
        task.task_name,
        StageFactory(kind.module, kind.cls, {"spec": task, "storage": storage}),
        Resources(
            num_cpus=task.num_cpus,
            # A task pinned to the CPU must not hold a GPU it will not use.
            num_gpus=0 if task.device == "cpu" else task.num_gpus,
            actor=True,
            max_actors=task.actors,
        ),
        task.batch_size,
        cpus_from_spec="num_cpus" in task.model_fields_set,
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
        Resources(num_cpus=0.5),
        None,
    )
    return [_model_stage(spec, synth), write]
