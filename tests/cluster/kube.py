"""Validating rendered manifests: KubeRay kinds against the KubeRay v1.7.0 CRDs in
shared/kuberay/, built-in kinds with `kubernetes-validate`, both strict (an unknown or
misplaced field fails, as `kubectl apply` with server-side field validation does)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE_VERSION = "1.33.0"
_CRD_FILES = {
    "RayJob": "ray.io_rayjobs.yaml",
    "RayCronJob": "ray.io_raycronjobs.yaml",
    "RayCluster": "ray.io_rayclusters.yaml",
}


def crd_dir() -> Path:
    """shared/kuberay/: beside the clone in CI (../shared), inside it on the device machine,
    or two levels up from a worktree; a missing folder is an error, not a skip."""
    candidates = [Path(p) for p in [os.environ.get("AUDIOBATCH_KUBERAY_CRDS")] if p] + [
        ROOT.parent / "shared" / "kuberay",
        ROOT / "shared" / "kuberay",
        ROOT.parents[1] / "shared" / "kuberay",
    ]
    for folder in candidates:
        if (folder / _CRD_FILES["RayJob"]).is_file():
            return folder
    raise FileNotFoundError(
        "KubeRay v1.7.0 CRDs not found (looked in "
        + ", ".join(map(str, candidates))
        + "); put shared/ beside the clone or set AUDIOBATCH_KUBERAY_CRDS"
    )


def _strict(schema):
    """Close every object schema that lists its properties (the API server prunes or,
    with strict field validation, rejects unknown fields; jsonschema would accept them)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """One validator per kind: checking the (large) schema itself once, not per manifest."""
    crd = yaml.load((crd_dir() / _CRD_FILES[kind]).read_text(), Loader=yaml.CSafeLoader)
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(v1["schema"]["openAPIV3Schema"])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def validate(obj: dict) -> None:
    """Raise if `obj` is not a valid manifest of its kind."""
    kind = obj["kind"]
    if kind in _CRD_FILES:
        if obj["apiVersion"] != "ray.io/v1":
            raise ValueError(f"{kind}: apiVersion must be ray.io/v1, got {obj['apiVersion']}")
        crd_validator(kind).validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
