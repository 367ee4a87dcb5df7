"""`audiobatch submit`: a validated job spec sent to a Ray cluster through the Ray Jobs API.

The job's entrypoint runs `audiobatch run` on the cluster (its driver on the head node).
The spec travels inline, in the job's environment (`AUDIOBATCH_JOB_SPEC`), and reaches
`audiobatch run` on its stdin: nothing is read from the submitter's disk at run time, and
no `working_dir` package is needed (on one machine, nodes sharing Ray's temp dir lost
that package to each other's clean-up: the multi-node test saw RuntimeEnvSetupError). Following, stopping and listing jobs is `ray job ...`'s work; this prints the
commands.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from pipeline.cluster.k8s import k8s_name
from pipeline.cluster.paths import portable_spec, refuse_local_paths
from pipeline.errors import AudiobatchError, SpecError
from pipeline.spec import JobSpec

SPEC_ENV = "AUDIOBATCH_JOB_SPEC"
ENTRYPOINT = f'printf "%s" "${SPEC_ENV}" | audiobatch run /dev/stdin'
# One environment variable may hold 128 KiB on Linux (MAX_ARG_STRLEN).
MAX_INLINE_SPEC = 100_000
CONNECT_TIMEOUT_S = 10.0
TAIL_LINES = 30
AGENT_WAIT_S = 30.0


class SubmitError(AudiobatchError):
    """The cluster could not be reached or refused the job."""

    exit_code = 7


@dataclass(frozen=True)
class SubmitOptions:
    address: str  # the dashboard's URL, http://head:8265
    wait: bool = False
    runtime_env: Path | None = None  # a YAML/JSON Ray runtime environment
    entrypoint_num_cpus: float | None = None
    allow_local_paths: bool = False


def submit(spec: JobSpec, opts: SubmitOptions, out=print) -> int:
    """Submit `spec`; with `opts.wait`, follow its logs and return 0 only if it succeeded."""
    refuse_local_paths(spec, allow=opts.allow_local_paths)
    text = portable_spec(spec)
    if len(text.encode()) > MAX_INLINE_SPEC:
        raise SpecError(
            f"job spec '{spec.name}' is {len(text.encode()) // 1024} KiB; submit sends it inline "
            f"(at most {MAX_INLINE_SPEC // 1000} kB): list items in a manifest, not the spec"
        )
    spec_hash = _hash_of(text)
    runtime_env = _runtime_env(opts.runtime_env)
    address = dashboard_url(opts.address)
    client = _client(address)
    job_id = submission_id(spec.name, spec_hash)
    env_vars = {**runtime_env.get("env_vars", {}), SPEC_ENV: text}
    _submit_job(
        client,
        address,
        entrypoint=ENTRYPOINT,
        submission_id=job_id,
        runtime_env={**runtime_env, "env_vars": env_vars},
        entrypoint_num_cpus=opts.entrypoint_num_cpus,
        metadata={"audiobatch_job": spec.name, "audiobatch_spec_hash": spec_hash},
    )
    out(f"submitted job '{spec.name}' (spec hash {spec_hash}) to {address} as {job_id}")
    out(f"  follow: ray job logs --address {address} --follow {job_id}")
    out(f"  status: ray job status --address {address} {job_id}")
    out(f"  stop:   ray job stop --address {address} {job_id}")
    if not opts.wait:
        return 0
    return _wait(client, job_id, address)


def _submit_job(client, address: str, **job) -> None:
    """`submit_job`, retried while a head that just started has no job agent yet."""
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            client.submit_job(**job)
            return
        except (RuntimeError, ValueError, OSError) as exc:
            if "No available agent" in str(exc) and time.monotonic() < deadline:
                time.sleep(2.0)  # Ray's own advice: "please try again later"
                continue
            raise SubmitError(f"{address} refused job {job['submission_id']}: {exc}") from exc


def submission_id(job_name: str, spec_hash: str, now: datetime | None = None) -> str:
    """`<job name>-<UTC time>-<spec hash>`: says what runs, since when, and which spec."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{k8s_name(job_name)}-{stamp}-{spec_hash[:8]}"


def dashboard_url(address: str) -> str:
    """`http(s)://host:port` of the dashboard; a bare `host:port` means http."""
    if "://" not in address:
        address = f"http://{address}"
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(
            f"--address {address!r}: give the Ray dashboard's URL, e.g. http://head:8265 "
            "(the Jobs API is served there, not on the ray:// client port)"
        )
    return address.rstrip("/")


def _hash_of(text: str) -> str:
    from pipeline.spec import parse_spec

    return parse_spec(yaml.safe_load(text), "the submitted spec").spec_hash()


def _runtime_env(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        env = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"--runtime-env {path}: cannot read it ({exc})") from None
    if not isinstance(env, dict):
        raise SpecError(f"--runtime-env {path}: must be a mapping (env_vars, pip, ...)")
    if not isinstance(env.get("env_vars", {}), dict):
        raise SpecError(f"--runtime-env {path}: env_vars must be a mapping")
    return env


def _client(address: str):
    """A JobSubmissionClient, failing within seconds (not minutes) when nobody answers.

    Ray's client sets no timeout on its requests: a head that accepts connections but never
    replies would hang it. Ask the version endpoint ourselves first, with a deadline."""
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=CONNECT_TIMEOUT_S) as r:
            version = json.loads(r.read()).get("ray_version")
    except (OSError, ValueError) as exc:  # URLError, timeouts and bad JSON alike
        raise SubmitError(
            f"cannot reach the Ray dashboard at {address} ({_reason(exc)}); check the "
            "address (http://HEAD:8265) and that the cluster is up"
        ) from None
    if not version:
        raise SubmitError(f"{address} answered, but not as a Ray dashboard (no ray_version)")
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SubmitError(f"{address} is not a Ray Jobs API ({exc})") from None


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


def _wait(client, job_id: str, address: str) -> int:
    from ray.job_submission import JobStatus

    try:
        asyncio.run(_follow(client, job_id))
        while not (status := client.get_job_status(job_id)).is_terminal():
            time.sleep(1.0)  # the log stream closed early: poll until the job ends
    except KeyboardInterrupt:
        print(
            f"audiobatch: stopped following; job {job_id} keeps running "
            f"(ray job stop --address {address} {job_id} ends it)",
            file=sys.stderr,
        )
        return 130
    if status == JobStatus.SUCCEEDED:
        return 0
    info = client.get_job_info(job_id)
    tail = client.get_job_logs(job_id).rstrip().splitlines()[-TAIL_LINES:]
    print(f"audiobatch: job {job_id} {status.value}: {info.message or ''}", file=sys.stderr)
    print(f"last {len(tail)} lines of its log:", file=sys.stderr)
    print("\n".join(f"  {line}" for line in tail), file=sys.stderr)
    return 1


async def _follow(client, job_id: str) -> None:
    try:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except RuntimeError as exc:  # the stream broke; the caller polls the status instead
        print(f"audiobatch: log stream ended early ({exc})", file=sys.stderr)
