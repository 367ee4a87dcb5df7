"""A task's identity in an output: its name stands for one way of producing its rows.

Completion is tracked per item and task name, so a task whose model or decoding changed
under the same name would silently leave old items with the old output and new items
with the new one. The first run that writes a task records what decides its output in
`<output>/_tasks/<name>.json`: the kind, the model and revision, the model's resolved
revision (`model_revision`: a hub commit or a content hash, pipeline/models/revision.py),
and every option that changes results. A later spec that changes any of it under the same name is refused
(at `validate` and at `run`) with the fields that differ. Options that only say how the
work is run (GPUs, CPUs, threads, actors, batch sizes, device, dtype, storage) are not
part of it: a transcript does not depend on its batch.
"""

from __future__ import annotations

import json
import posixpath

from pipeline.errors import SpecError
from pipeline.spec import JobSpec

TASKS_DIR = "_tasks"

# How a task is run, not what it produces.
EXECUTION_FIELDS = frozenset(
    {
        "name",
        "num_gpus",
        "num_cpus",
        "cpu_threads",
        "actors",
        "batch_size",
        "micro_batch",
        "batch_seconds",
        "device",
        "dtype",
        "storage",
        "trust_remote_code",
    }
)


def identity(task, revision: str | None = None) -> dict:
    """What decides a task's rows (see the module doc); `revision` is its model's resolved one."""
    fields = task.model_dump(mode="json")
    if revision is not None:
        fields[REVISION] = revision
    return {k: v for k, v in sorted(fields.items()) if k not in EXECUTION_FIELDS}


REVISION = "model_revision"


def check_tasks(fs, root: str, spec: JobSpec, revisions: dict[str, str] | None = None) -> None:
    """Raise SpecError if a task of `spec` changed under a name already used in the output.

    `revisions` (task name -> resolved model revision) is compared where given: `validate`
    leaves out the models it does not resolve offline."""
    revisions = revisions or {}
    problems = []
    for task in spec.tasks:
        recorded = _read(fs, _path(root, task.task_name))
        if recorded is None:
            continue
        now = identity(task, revisions.get(task.task_name))
        # A field newer than the record (added by a later audiobatch) is not a change, nor
        # is a revision this check was not given.
        changed = sorted(
            k for k in recorded if (k in now or k != REVISION) and now.get(k) != recorded[k]
        )
        if changed:
            diff = "; ".join(
                f"{k}: {recorded.get(k)!r} in the output, {now.get(k)!r} in this spec"
                for k in changed
            )
            problems.append(
                f"  tasks.{task.task_name}: changed since it last wrote {spec.output.uri} ({diff}). "
                f"Give the changed task a new name (e.g. {task.task_name}_v2) so it runs over "
                "every item again, or use a new output.uri"
            )
    if problems:
        raise SpecError("a task changed under its old name\n" + "\n".join(problems))


def record_tasks(fs, root: str, spec: JobSpec, revisions: dict[str, str] | None = None) -> None:
    """Write the identity of each task not recorded yet (after `check_tasks` passed)."""
    revisions = revisions or {}
    for task in spec.tasks:
        path = _path(root, task.task_name)
        if _read(fs, path) is None:
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
            record = identity(task, revisions.get(task.task_name))
            fs.pipe_file(path, json.dumps(record, indent=1).encode())


def recorded_revisions(fs, root: str) -> dict[str, str | None]:
    """Task name -> the model revision its record holds (None: recorded before revisions
    were), for every task recorded in the output."""
    try:
        paths = fs.glob(posixpath.join(root, TASKS_DIR, "*.json"))
    except FileNotFoundError:
        return {}
    return {
        posixpath.basename(p)[: -len(".json")]: (_read(fs, p) or {}).get(REVISION) for p in paths
    }


def _read(fs, path: str) -> dict | None:
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _path(root: str, name: str) -> str:
    return posixpath.join(root, TASKS_DIR, f"{name}.json")
