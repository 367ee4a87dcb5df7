"""Shared fixtures: one local Ray cluster and one S3 emulator per test session.

The cluster is started with `ray start --head` (not in-process) so tests can also
run `audiobatch run` as a separate driver process against it and kill that
process mid-run. Credentials for the emulator come through the environment, the
same default chain a user's job relies on; they are set before Ray starts so its
workers inherit them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Canary values (any key works with the emulator): a test looks for them in every log,
# table and report a run leaves (README "Reliability", S1).
os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIACANARY0123456789")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "canary/Secret+Key0123456789abcdefghijklmn")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# Ray 2.60 turns on token auth for `ray start`; a test-only cluster used by this process
# and the drivers it spawns does without (its token is not found by `ray.init(address=)`).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Without it Ray advertises the machine's eth0 address instead of 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_ray_start(log: Path, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    """Wait until a blocking `ray start` (stdout in `log`) says its processes are up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Ray runtime started" in text:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{text[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"ray start did not come up within {timeout_s:.0f} s (log: {log})")


def stop_process_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """End a process started with `start_new_session=True` and everything in its group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory):
    """Address of a 2-CPU Ray cluster shared by all integration tests; the test process joins it."""
    import ray

    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    # Ray caps unix socket paths at 107 bytes: keep its temp dir short.
    short = Path("/tmp") / f"ab-ray-{os.getpid()}"
    short.mkdir(exist_ok=True)
    ray_bin = str(BIN / "ray")
    cmd = [
        ray_bin,
        "start",
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--num-gpus=0",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={short}",
    ]
    # `--block` in a process group of its own: the cluster is ended by signalling that group,
    # never by `ray stop`, which ends every Ray process on the machine (other people's too).
    log = temp / "ray-start.log"
    with log.open("w") as out:
        head = subprocess.Popen(
            [*cmd, "--block"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RAY_TMPDIR": str(temp)},
            start_new_session=True,
        )
    address = f"127.0.0.1:{port}"
    try:
        wait_for_ray_start(log, head)
        ray.init(address=address, logging_level="WARNING")
        yield address
    finally:
        ray.shutdown()
        stop_process_group(head)
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3 emulator (moto) on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh bucket per test; yields (endpoint, bucket name)."""
    import hashlib

    import boto3

    name = "t-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=name)
    return s3_endpoint, name


# Fixtures that start a service: a test using one (directly or through another fixture)
# must carry the `integration` marker, so `-m "not integration"` starts neither.
SERVICE_FIXTURES = ("ray_address", "s3_endpoint")


def pytest_collection_modifyitems(config, items):
    unmarked = [
        item.nodeid
        for item in items
        if set(SERVICE_FIXTURES) & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests that start Ray or the S3 emulator need @pytest.mark.integration: "
            + ", ".join(unmarked)
        )
