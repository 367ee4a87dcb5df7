"""`audiobatch render k8s`: every rendered manifest validated against KubeRay v1.7.0's CRDs
or the Kubernetes API schemas, the spec carried intact, the scheduling knobs in place."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from pipeline.cli import main
from pipeline.cluster.k8s import K8sOptions, dump, k8s_name, parse_workers, render
from pipeline.cluster.paths import portable_spec
from pipeline.errors import SpecError
from pipeline.spec import parse_spec
from tests.cluster.kube import crd_dir, validate

SPEC = {
    "name": "Nightly_Labels",
    "input": {"uri": "s3://corpora/librispeech/", "storage": {"endpoint_url": "http://s3:9000"}},
    "tasks": [
        {"kind": "ctc", "model": "facebook/wav2vec2-base-960h", "num_gpus": 1},
        {"kind": "classify", "name": "sounds", "model": "s3://models/ast/", "top_k": 3},
    ],
    "output": {"uri": "s3://labels/nightly/"},
    "runtime": {"address": "ray://somewhere:10001", "read_batch_items": 16},
}


def _render(**options):
    spec = parse_spec(SPEC)
    docs = render(
        spec, portable_spec(spec), K8sOptions(image="reg.example/audiobatch:0.1.0", **options)
    )
    return spec, {(obj["kind"], obj["metadata"].get("name")): obj for _, obj in docs}, docs


def _pods(rayjob_spec: dict) -> tuple[dict, dict]:
    cluster = rayjob_spec["rayClusterSpec"]
    return cluster["headGroupSpec"]["template"]["spec"], cluster["workerGroupSpecs"][0]


def test_the_crds_are_found():
    assert (crd_dir() / "ray.io_rayjobs.yaml").is_file()


def test_one_off_rayjob_and_configmap_are_valid_and_carry_the_spec():
    spec, objs, docs = _render(gpu_workers=(0, 6), namespace="speech")
    assert sorted(objs) == [("ConfigMap", "nightly-labels-spec"), ("RayJob", "nightly-labels")]
    for _, obj in docs:
        validate(obj)
        assert obj["metadata"]["namespace"] == "speech"
    carried = parse_spec(
        yaml.safe_load(objs["ConfigMap", "nightly-labels-spec"]["data"]["job.yaml"])
    )
    # The spec travels whole, less the submitter's Ray address (the pod joins its own cluster).
    assert carried.runtime.address is None
    assert carried.model_dump(exclude={"runtime"}) == spec.model_dump(exclude={"runtime"})
    assert carried.runtime.read_batch_items == 16

    job = objs["RayJob", "nightly-labels"]["spec"]
    assert job["entrypoint"] == "audiobatch run /etc/audiobatch/job.yaml"
    assert job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] > 0 and job["activeDeadlineSeconds"] > 0
    assert job["backoffLimit"] >= 1
    assert job["rayClusterSpec"]["enableInTreeAutoscaling"] is True
    head, workers = _pods(job)
    assert {"name": "spec", "configMap": {"name": "nightly-labels-spec"}} in head["volumes"]
    mounts = head["containers"][0]["volumeMounts"]
    assert {"name": "spec", "mountPath": "/etc/audiobatch", "readOnly": True} in mounts
    assert (workers["minReplicas"], workers["maxReplicas"], workers["replicas"]) == (0, 6, 0)
    worker = workers["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["image"] == "reg.example/audiobatch:0.1.0"
    # Each worker pod has its own model cache: no disk shared between nodes.
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert env["AUDIOBATCH_MODEL_CACHE"].startswith("/cache/")
    assert {"name": "cache", "emptyDir": {}} in workers["template"]["spec"]["volumes"]


def test_credentials_come_from_a_secret_by_name_only():
    _, objs, docs = _render(secret="s3-creds")
    head, workers = _pods(objs["RayJob", "nightly-labels"]["spec"])
    for pod in (head, workers["template"]["spec"]):
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    text = dump(docs)
    assert "AWS_SECRET_ACCESS_KEY" not in text and "testing" not in text
    _, objs, _ = _render(secret=None)
    head, _ = _pods(objs["RayJob", "nightly-labels"]["spec"])
    assert "envFrom" not in head["containers"][0]


def test_schedule_renders_raycronjob_and_a_forbid_cronjob_all_valid():
    _, objs, docs = _render(schedule="0 2 * * *")
    kinds = sorted(k for k, _ in objs)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "CronJob",
        "RayCronJob",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    for _, obj in docs:
        validate(obj)
    cron = objs["RayCronJob", "nightly-labels"]["spec"]
    assert cron["schedule"] == "0 2 * * *"
    assert cron["jobTemplate"]["entrypoint"] == "audiobatch run /etc/audiobatch/job.yaml"
    portable = objs["CronJob", "nightly-labels"]["spec"]
    assert portable["concurrencyPolicy"] == "Forbid" and portable["schedule"] == "0 2 * * *"
    # The CronJob's pod creates this RayJob: it must be valid too, with a fresh name per run.
    held = yaml.safe_load(objs["ConfigMap", "nightly-labels-rayjob"]["data"]["rayjob.yaml"])
    validate(held)
    assert held["metadata"]["generateName"] == "nightly-labels-" and "name" not in held["metadata"]
    assert held["spec"] == cron["jobTemplate"]
    pod = portable["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "nightly-labels-launcher"
    script = pod["containers"][0]["command"][-1]
    assert "kubectl create" in script and "Complete/SUCCEEDED" in script
    role = objs["Role", "nightly-labels-launcher"]
    assert role["rules"] == [
        {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get"]}
    ]
    # The alpha gate is stated where a reader of the manifests sees it.
    (note,) = [c for c, obj in docs if obj["kind"] == "RayCronJob"]
    assert "feature gate RayCronJob" in note and "KubeRay >= 1.6" in note
    assert "# Option 1: RayCronJob needs KubeRay >= 1.6" in dump(docs)


@pytest.mark.parametrize(
    "path, key",
    [
        (("spec", "rayClusterSpec", "headGroupSpec"), "rayStartParam"),  # misspelt
        (("spec",), "schedule"),  # a RayCronJob field on a RayJob
        (("spec", "rayClusterSpec", "workerGroupSpecs", 0), "minReplica"),
    ],
)
def test_the_crd_check_rejects_misspelt_or_misplaced_fields(path, key):
    _, objs, _ = _render()
    bad = copy.deepcopy(objs["RayJob", "nightly-labels"])
    node = bad
    for part in path:
        node = node[part]
    node[key] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_the_builtin_check_rejects_a_bad_cronjob():
    import kubernetes_validate

    _, objs, _ = _render(schedule="@daily")
    bad = copy.deepcopy(objs["CronJob", "nightly-labels"])
    bad["spec"]["concurrencyPolicy"] = 7
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)


def test_bad_options_are_refused():
    with pytest.raises(SpecError, match="cron"):
        _render(schedule="every night")
    for text in ("3:1", "a:b", "0:0", "-1:2"):
        with pytest.raises(SpecError, match="--gpu-workers"):
            parse_workers(text)
    assert parse_workers("2") == (2, 2) and parse_workers("0:8") == (0, 8)
    assert k8s_name("Nightly_Labels v2") == "nightly-labels-v2"
    assert k8s_name("2026 run") == "ab-2026-run"


def test_cli_writes_manifests_and_refuses_local_paths(tmp_path, capsys):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "k8s.yaml"
    args = ["render", "k8s", str(spec), "--image", "img:1", "--gpu-workers", "1:3", "-o", str(out)]
    assert main([*args, "--schedule", "0 3 * * *"]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 7
    for obj in docs:
        validate(obj)

    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump({**SPEC, "output": {"uri": str(tmp_path / "out")}}))
    assert main(["render", "k8s", str(local), "--image", "img:1"]) == 2
    err = capsys.readouterr().err
    assert "output.uri" in err and "--allow-local-paths" in err
    assert main(["render", "k8s", str(local), "--image", "img:1", "--allow-local-paths"]) == 0
    assert "kind: RayJob" in capsys.readouterr().out
