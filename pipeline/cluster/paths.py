"""What of a spec can go to a cluster: the copy that travels, and the local paths that cannot.

A spec submitted to a cluster runs on other machines; a path like `/data/corpus` or
`.demo/models/w2v` there names whatever those machines hold, usually nothing. Submission
refuses such specs unless the user says the paths exist on the cluster (a shared volume).
"""

from __future__ import annotations

import yaml

from pipeline.errors import SpecError
from pipeline.io.storage import is_remote
from pipeline.models.hub import is_hub_id
from pipeline.spec import JobSpec


def local_paths(spec: JobSpec) -> list[tuple[str, str]]:
    """(field, value) for every place the job reads or writes that is not object storage."""
    places: list[tuple[str, str | None]] = [
        ("input.uri", spec.input.uri),
        ("input.manifest", spec.input.manifest),
        ("output.uri", spec.output.uri),
    ]
    for i, task in enumerate(spec.tasks):
        places += [(f"tasks.{i}.{f}", None if is_hub_id(v) else v) for f, v in task.sources()]
        places += [(f"tasks.{i}.{f}", getattr(task, f)) for f in task.PATH_FIELDS]
    return [(field, value) for field, value in places if value and not is_remote(value)]


def refuse_local_paths(spec: JobSpec, *, allow: bool, flag: str = "--allow-local-paths") -> None:
    """Raise SpecError naming each local path, unless `allow` (the paths exist on the cluster)."""
    found = local_paths(spec)
    if found and not allow:
        listed = "\n".join(f"  {field}: {value}" for field, value in found)
        raise SpecError(
            f"job spec '{spec.name}' uses local paths, which the cluster's nodes cannot read "
            f"from this machine's disk:\n{listed}\nput them on object storage (s3://, gs://) or "
            f"a hub id, or pass {flag} if these paths exist on every node (a shared volume)"
        )


def portable_spec(spec: JobSpec) -> str:
    """The validated spec as YAML for a job that runs inside the cluster.

    `runtime.address` is dropped: inside a Ray job (or a KubeRay pod) the driver joins its
    own cluster, whatever address the submitter's copy of the spec named."""
    runtime = spec.runtime.model_copy(update={"address": None})
    data = spec.model_copy(update={"runtime": runtime}).model_dump(
        mode="json", exclude_defaults=True
    )
    # `kind` is the tasks' discriminator: needed even where it equals its default.
    data["tasks"] = [{"kind": t.kind, **d} for t, d in zip(spec.tasks, data["tasks"], strict=True)]
    return yaml.safe_dump(data, sort_keys=False)
