"""A real Ray head on loopback with the dashboard (the Jobs API): `ray start --head --block`
in a process group of its own, ended by signalling that group (never `ray stop`, which
ends every Ray process on the machine). Every port is picked free, so it coexists with
the session's cluster and other people's. Multi-node clusters: infra/local_cluster.py.
"""

from __future__ import annotations

import json
import os
import subprocess
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
