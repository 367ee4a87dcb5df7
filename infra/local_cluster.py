"""A real multi-node Ray cluster on this machine, for trying a job across nodes.

    python infra/local_cluster.py --workers 2 --cpus-per-worker 2 --root /tmp/lc

starts a head (no CPUs for work, like the rendered KubeRay head; the dashboard on
127.0.0.1, so the Jobs API and the state API answer) and N worker nodes with
`ray.cluster_utils.Cluster`, every port picked free. Each worker node has a folder of
its own under `--root` (`node_1/models`, `node_1/hf`), given to its raylet, and so to
every worker process of that node, as `AUDIOBATCH_MODEL_CACHE` and `HF_HOME`: the nodes
share no model cache, as on machines that share no disk. Each node also carries a
custom resource named after it (`node_1: 1`).

It prints one JSON line (`address`, `dashboard`, `nodes`: name, node_id, raylet_pid,
cache) and then reads commands, one a line, on stdin:

    kill node_1   SIGKILL every process of that node (a machine lost); answers a JSON line
    stop          end the cluster (also on end of input, SIGTERM or SIGINT)

Run jobs against it with `audiobatch run SPEC --address ADDRESS` or
`audiobatch submit SPEC --address DASHBOARD`. `ray start --address` cannot join a
loopback head here (it resolves the head's GCS at the eth0 address), hence `Cluster`.
Never end it with `ray stop`: that ends every Ray process on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agent_ports() -> dict:
    """Ports Ray would otherwise take at fixed numbers, colliding with other clusters."""
    return {
        "dashboard_agent_listen_port": _free_port(),
        "metrics_agent_port": _free_port(),
        "metrics_export_port": _free_port(),
        "runtime_env_agent_port": _free_port(),
    }


def _head_args(temp_dir: str, dashboard: bool) -> dict:
    args = {
        "num_cpus": 0,
        "node_ip_address": "127.0.0.1",
        "temp_dir": temp_dir,
        "include_dashboard": dashboard,
        "ray_client_server_port": _free_port(),
        **_agent_ports(),
    }
    if dashboard:
        args.update(dashboard_host="127.0.0.1", dashboard_port=_free_port())
    return args


def _node_env(folder: Path) -> dict[str, str]:
    """What every process of one node sees: its own model and hub caches."""
    for sub in ("models", "hf"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {"AUDIOBATCH_MODEL_CACHE": str(folder / "models"), "HF_HOME": str(folder / "hf")}


def start(args: argparse.Namespace, temp_dir: str):
    """The cluster and its worker nodes by name."""
    import ray._private.utils
    from ray.cluster_utils import Cluster

    # Cluster writes its address to /tmp/ray/ray_current_cluster, where any plain
    # `ray.init()` on the machine (someone else's) would then find and join it.
    ray._private.utils.write_ray_address = lambda *a, **k: None
    cluster = Cluster(
        initialize_head=True, head_node_args=_head_args(temp_dir, not args.no_dashboard)
    )
    nodes = {}
    for i in range(1, args.workers + 1):
        name = f"node_{i}"
        nodes[name] = cluster.add_node(
            num_cpus=args.cpus_per_worker,
            node_ip_address="127.0.0.1",
            resources={name: 1},
            object_store_memory=args.object_store_mb * 2**20,
            env_vars=_node_env(Path(args.root) / name),
            **_agent_ports(),
        )
    return cluster, nodes


def describe(cluster, nodes: dict, root: str) -> dict:
    head = cluster.head_node
    return {
        "address": cluster.address,
        "dashboard": f"http://{head.webui_url}" if head.webui_url else None,
        "head_node_id": head.node_id,
        "nodes": [
            {
                "name": name,
                "node_id": node.node_id,
                "raylet_pid": node.all_processes["raylet"][0].process.pid,
                "cache": str(Path(root) / name / "models"),
            }
            for name, node in nodes.items()
        ],
    }


def serve(cluster, nodes: dict, lines) -> None:
    """Answer `kill NAME` until `stop` or the end of input."""
    for line in lines:
        words = line.split()
        if words == ["stop"]:
            return
        if len(words) == 2 and words[0] == "kill" and words[1] in nodes:
            cluster.remove_node(nodes.pop(words[1]), allow_graceful=False)
            _say({"killed": words[1]})
        else:
            _say({"error": f"unknown command {line.strip()!r}; use 'kill NODE' or 'stop'"})


def _say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
    parser.add_argument("--cpus-per-worker", type=float, default=2, help="CPUs of each")
    parser.add_argument("--object-store-mb", type=int, default=150, help="per node")
    parser.add_argument("--root", required=True, help="folder for the nodes' own caches")
    parser.add_argument("--no-dashboard", action="store_true", help="no Jobs/state API")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    # Ray caps unix socket paths at 107 bytes: keep its temp dir short.
    temp_dir = tempfile.mkdtemp(prefix="ab-lc-", dir="/tmp")
    # SIGTERM ends the cluster like `stop` does (the finally below runs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cluster = None
    try:
        cluster, nodes = start(args, temp_dir)
        _say(describe(cluster, nodes, args.root))
        serve(cluster, nodes, sys.stdin)
    except KeyboardInterrupt:
        pass
    finally:
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
