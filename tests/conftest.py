"""Shared fixtures: one local Ray cluster and one S3 emulator per test session.

The cluster is started with `ray start --head` (not in-process) so tests can also
run `audiobatch run` as a separate driver process against it and kill that
process mid-run. Credentials for the emulator come through the environment, the
same default chain a user's job relies on; they are set before Ray starts so its
workers inherit them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# Ray 2.60 turns on token auth for `ray start`; a test-only cluster used by this process
# and the drivers it spawns does without (its token is not found by `ray.init(address=)`).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    subprocess.run(
        cmd, check=True, capture_output=True, env={**os.environ, "RAY_TMPDIR": str(temp)}
    )
    address = f"127.0.0.1:{port}"
    ray.init(address=address, logging_level="WARNING")
    yield address
    ray.shutdown()
    subprocess.run([ray_bin, "stop", "--force"], capture_output=True)
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
