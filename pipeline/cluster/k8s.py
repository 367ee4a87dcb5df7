"""`audiobatch render k8s`: KubeRay manifests that run a job spec on Kubernetes.

One-off: a ConfigMap holding the validated spec and a `RayJob` that brings up a Ray
cluster (a CPU-less head, a GPU worker group the autoscaler grows from `min` to `max`
workers), runs `audiobatch run` on the mounted spec, and is torn down when the job ends.

Nightly (`schedule`): the same RayJob as the template of a `RayCronJob` (KubeRay >= 1.6,
alpha, behind the operator's `RayCronJob` feature gate; runs may overlap), and the portable
alternative: a Kubernetes `CronJob` with `concurrencyPolicy: Forbid` whose pod creates the
RayJob and waits for it to end, so two runs never overlap.

Credentials are never written into a manifest: pods read them from a Secret by name
(`envFrom`), the default credential chain then finds them (or a workload identity).
Each worker pod keeps its model copies in its own volume (`AUDIOBATCH_MODEL_CACHE`):
a model named by an object-storage prefix is fetched once per node, no shared disk.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib.metadata import version

import yaml

from pipeline.errors import SpecError
from pipeline.spec import JobSpec

SPEC_DIR = "/etc/audiobatch"
CACHE_DIR = "/cache"
_CRON = re.compile(r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$")


@dataclass(frozen=True)
class K8sOptions:
    """What `render k8s` takes besides the spec."""

    image: str  # the audiobatch image (infra/Dockerfile), also used by the CronJob's pod
    namespace: str = "default"
    schedule: str | None = None  # a cron expression; None renders a one-off RayJob
    gpu_workers: tuple[int, int] = (0, 4)  # min and max GPU worker pods
    gpus_per_worker: int = 1
    worker_cpus: int = 8
    worker_memory: str = "48Gi"
    secret: str | None = "audiobatch-credentials"  # envFrom of every pod; None: none
    active_deadline_s: int = 24 * 3600
    backoff_limit: int = 1  # a retried RayJob resumes where the last attempt stopped
    ttl_after_finished_s: int = 3600


def parse_workers(text: str) -> tuple[int, int]:
    """`MIN:MAX` (or a single `N`) into a pair, refusing what the autoscaler cannot do."""
    low, _, high = text.partition(":")
    try:
        lo, hi = int(low), int(high or low)
    except ValueError:
        raise SpecError(f"--gpu-workers expects MIN:MAX (e.g. 0:8), got {text!r}") from None
    if lo < 0 or hi < 1 or lo > hi:
        raise SpecError(f"--gpu-workers {text!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return lo, hi


def k8s_name(job_name: str) -> str:
    """A DNS-1123 label from the job name, short enough for KubeRay's derived names."""
    name = re.sub(r"[^a-z0-9-]+", "-", job_name.lower()).strip("-")[:40].rstrip("-")
    if not name or not name[0].isalpha():
        name = f"ab-{name}".rstrip("-")
    return name


def render(spec: JobSpec, spec_yaml: str, opts: K8sOptions) -> list[tuple[str, dict]]:
    """The manifests as (leading comment, object) pairs, in the order to apply them."""
    if opts.schedule is not None and not _CRON.match(opts.schedule.strip()):
        raise SpecError(
            f"--schedule {opts.schedule!r} is not a cron expression (five fields, e.g. "
            "'0 2 * * *', or @daily)"
        )
    name = k8s_name(spec.name)
    config = _manifest("v1", "ConfigMap", f"{name}-spec", opts, {"data": {"job.yaml": spec_yaml}})
    docs = [("The validated job spec, mounted into the Ray head at " + SPEC_DIR, config)]
    job = _rayjob_spec(name, opts)
    if opts.schedule is None:
        docs.append(
            (
                "One run of the job; the Ray cluster is deleted when it ends.",
                _rayjob(name, job, opts),
            )
        )
        return docs
    cron = _manifest(
        "ray.io/v1",
        "RayCronJob",
        name,
        opts,
        {"spec": {"schedule": opts.schedule, "jobTemplate": job}},
    )
    docs.append((_RAYCRONJOB_NOTE, cron))
    return docs + _cronjob_docs(name, job, opts)


_RAYCRONJOB_NOTE = (
    "Option 1: RayCronJob needs KubeRay >= 1.6 with the alpha feature gate RayCronJob enabled\n"
    "(Helm: featureGates: [{name: RayCronJob, enabled: true}]). It has no concurrency policy:\n"
    "a run still going when the next is due overlaps it. Apply this OR option 2 below."
)
_CRONJOB_NOTE = (
    "Option 2 (portable, any KubeRay): a CronJob whose pod creates the RayJob and waits for it;\n"
    "concurrencyPolicy: Forbid so runs never overlap. Needs the ServiceAccount, Role and\n"
    "RoleBinding below and kubectl in the image (infra/Dockerfile has it)."
)


def _manifest(api: str, kind: str, name: str, opts: K8sOptions, body: dict) -> dict:
    meta = {
        "name": name,
        "namespace": opts.namespace,
        "labels": {"app.kubernetes.io/part-of": "audiobatch"},
    }
    return {"apiVersion": api, "kind": kind, "metadata": meta, **body}


def _rayjob(name: str, job: dict, opts: K8sOptions) -> dict:
    return _manifest("ray.io/v1", "RayJob", name, opts, {"spec": job})


def _rayjob_spec(name: str, opts: K8sOptions) -> dict:
    return {
        "entrypoint": f"audiobatch run {SPEC_DIR}/job.yaml",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": opts.ttl_after_finished_s,
        "activeDeadlineSeconds": opts.active_deadline_s,
        "backoffLimit": opts.backoff_limit,
        "rayClusterSpec": {
            "rayVersion": version("ray"),
            "enableInTreeAutoscaling": True,
            "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": 120},
            "headGroupSpec": {
                # No CPUs on the head: decode and model work goes to the workers, the driver stays.
                "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                "template": {"spec": _head_pod(name, opts)},
            },
            "workerGroupSpecs": [_gpu_group(opts)],
        },
    }


def _container(name: str, opts: K8sOptions, resources: dict, mounts: list[dict]) -> dict:
    container = {
        "name": name,
        "image": opts.image,
        "resources": resources,
        "env": [
            {"name": "AUDIOBATCH_MODEL_CACHE", "value": f"{CACHE_DIR}/models"},
            {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        ],
        "volumeMounts": [
            {"name": "cache", "mountPath": CACHE_DIR},
            {"name": "dshm", "mountPath": "/dev/shm"},
            *mounts,
        ],
    }
    if opts.secret:
        container["envFrom"] = [{"secretRef": {"name": opts.secret}}]
    return container


def _volumes(extra: list[dict]) -> list[dict]:
    # Ray's object store lives in /dev/shm, which is 64 MiB in a pod unless mounted.
    return [
        {"name": "cache", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        *extra,
    ]


def _head_pod(name: str, opts: K8sOptions) -> dict:
    resources = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    mount = {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}
    head = _container("ray-head", opts, resources, [mount])
    head["ports"] = [
        {"containerPort": 6379, "name": "gcs-server"},
        {"containerPort": 8265, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
    ]
    spec_volume = {"name": "spec", "configMap": {"name": f"{name}-spec"}}
    return {"containers": [head], "volumes": _volumes([spec_volume])}


def _gpu_group(opts: K8sOptions) -> dict:
    low, high = opts.gpu_workers
    gpus = str(opts.gpus_per_worker)
    resources = {
        "requests": {
            "cpu": str(opts.worker_cpus),
            "memory": opts.worker_memory,
            "nvidia.com/gpu": gpus,
        },
        "limits": {"memory": opts.worker_memory, "nvidia.com/gpu": gpus},
    }
    pod = {
        "containers": [_container("ray-worker", opts, resources, [])],
        "volumes": _volumes([]),
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    return {
        "groupName": "gpu",
        "replicas": low,
        "minReplicas": low,
        "maxReplicas": high,
        "rayStartParams": {"num-gpus": gpus},
        "template": {"spec": pod},
    }


def _cronjob_docs(name: str, job: dict, opts: K8sOptions) -> list[tuple[str, dict]]:
    launcher = f"{name}-launcher"
    template = _rayjob(name, job, opts)
    template["metadata"] = {**template["metadata"], "generateName": f"{name}-"}
    del template["metadata"]["name"]
    held = _manifest(
        "v1",
        "ConfigMap",
        f"{name}-rayjob",
        opts,
        {"data": {"rayjob.yaml": to_yaml(template)}},
    )
    account = _manifest("v1", "ServiceAccount", launcher, opts, {})
    role = _manifest(
        "rbac.authorization.k8s.io/v1",
        "Role",
        launcher,
        opts,
        {
            "rules": [
                {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get"]}
            ]
        },
    )
    binding = _manifest(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        launcher,
        opts,
        {
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": launcher},
            "subjects": [{"kind": "ServiceAccount", "name": launcher, "namespace": opts.namespace}],
        },
    )
    pod = {
        "serviceAccountName": launcher,
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "launch",
                "image": opts.image,
                "command": ["sh", "-c", _launch_script(opts.namespace)],
                "volumeMounts": [{"name": "rayjob", "mountPath": "/etc/rayjob", "readOnly": True}],
            }
        ],
        "volumes": [{"name": "rayjob", "configMap": {"name": f"{name}-rayjob"}}],
    }
    cron = _manifest(
        "batch/v1",
        "CronJob",
        name,
        opts,
        {
            "spec": {
                "schedule": opts.schedule,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                # The RayJob retries itself (backoffLimit); a retried launcher would start a second one.
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 0,
                        "activeDeadlineSeconds": opts.active_deadline_s + 3600,
                        "template": {"spec": pod},
                    }
                },
            }
        },
    )
    return [(_CRONJOB_NOTE, held), ("", account), ("", role), ("", binding), ("", cron)]


def _launch_script(namespace: str) -> str:
    ns = shlex.quote(namespace)
    return (
        "set -eu\n"
        f"name=$(kubectl create -n {ns} -f /etc/rayjob/rayjob.yaml -o jsonpath='{{.metadata.name}}')\n"
        'echo "created RayJob $name"\n'
        "while true; do\n"
        f"  state=$(kubectl get rayjob -n {ns} \"$name\" -o jsonpath='{{.status.jobDeploymentStatus}}/{{.status.jobStatus}}')\n"
        '  case "$state" in\n'
        '    Complete/SUCCEEDED) echo "RayJob $name succeeded"; exit 0 ;;\n'
        '    Complete/*|Failed/*) echo "RayJob $name ended: $state"; exit 1 ;;\n'
        "  esac\n"
        "  sleep 30\n"
        "done\n"
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the spec, scripts) as readable `|` blocks, not quoted lines."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(obj: dict) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=100)


def dump(docs: list[tuple[str, dict]]) -> str:
    """Multi-document YAML, each manifest after its comment, ready for `kubectl apply -f -`."""
    parts = []
    for comment, obj in docs:
        lines = "".join(f"# {line}\n" if line else "#\n" for line in comment.splitlines())
        parts.append(lines + to_yaml(obj))
    return "---\n".join(parts)
