"""A real Ray head on loopback with the dashboard (the Jobs API): `ray start --head --block`
in a process group of its own, ended by signalling that group (never `ray stop`, which
ends every Ray process on the machine). Every port is picked free, so it coexists with
the session's cluster and other people's. Multi-node clusters: `start_local_cluster`, which
runs infra/local_cluster.py (`ray.cluster_utils.Cluster`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import BIN, _free_port, stop_process_group, wait_for_ray_start

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path
    env: dict = field(repr=False)

    def kill(self) -> None:
        """SIGKILL the node's raylet and everything it started: a machine lost."""
        stop_process_group(self.proc, grace_s=0)


def _agent_ports() -> list[str]:
    return [
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
    ]


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment (emulator credentials, loopback Ray), the worktree's
    `pipeline` on the path of every worker and job driver, and the venv's commands."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        **(extra or {}),
    }


def _start(name: str, args: list[str], folder: Path, env: dict) -> Node:
    log = folder / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "ray"), "start", *args, "--disable-usage-stats", "--block"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    node = Node(name, proc, log, env)
    try:
        wait_for_ray_start(log, proc)
    except BaseException:
        node.kill()
        raise
    return node


def start_head(
    folder: Path, *, num_cpus: float, env: dict, resources: dict | None = None
) -> tuple[Node, str, str]:
    """A head with the dashboard on 127.0.0.1; returns (node, GCS address, dashboard URL)."""
    port, dashboard = _free_port(), _free_port()
    # Ray caps unix socket paths at 107 bytes: keep its temp dir short.
    temp = Path("/tmp") / f"ab-cl-{os.getpid()}-{port}"
    temp.mkdir(exist_ok=True)
    args = [
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus:g}",
        "--num-gpus=0",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={_free_port()}",
        f"--temp-dir={temp}",
        f"--resources={json.dumps(resources or {})}",
        *_agent_ports(),
    ]
    node = _start("head", args, folder, {**env, "RAY_TMPDIR": str(folder)})
    return node, f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}"


@dataclass
class LocalCluster:
    """A head and worker nodes run by infra/local_cluster.py in a process group of its own:
    `info` is what it printed (address, dashboard, nodes with name, node_id, cache)."""

    proc: subprocess.Popen
    info: dict
    log: Path

    @property
    def nodes(self) -> dict[str, dict]:
        return {n["name"]: n for n in self.info["nodes"]}

    def kill(self, name: str, timeout_s: float = 120.0) -> None:
        """SIGKILL every process of one worker node (the helper's `kill NAME`)."""
        self.proc.stdin.write(f"kill {name}\n")
        self.proc.stdin.flush()
        answer = _json_line(self.proc, self.log, timeout_s)
        if answer != {"killed": name}:
            raise RuntimeError(f"local_cluster did not kill {name}: {answer}")

    def stop(self) -> None:
        """`stop`, then the whole process group if it has not ended within a minute."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=60)
        stop_process_group(self.proc, grace_s=10)


def start_local_cluster(
    folder: Path, *, workers: int, cpus_per_worker: float, env: dict, timeout_s: float = 300.0
) -> LocalCluster:
    """infra/local_cluster.py with its caches under `folder/nodes`; its log in `folder`."""
    log = folder / "local_cluster.log"
    cmd = [
        sys.executable,
        str(ROOT / "infra" / "local_cluster.py"),
        f"--workers={workers}",
        f"--cpus-per-worker={cpus_per_worker:g}",
        f"--root={folder / 'nodes'}",
    ]
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            start_new_session=True,
        )
    cluster = LocalCluster(proc, {}, log)
    try:
        cluster.info = _json_line(proc, log, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _json_line(proc: subprocess.Popen, log: Path, timeout_s: float) -> dict:
    """The helper's next JSON line on stdout (anything else there is skipped)."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("{"):
                return json.loads(line)
        elif proc.poll() is not None:
            break
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise RuntimeError(f"local_cluster gave no answer (exit {proc.poll()}):\n{tail}")
