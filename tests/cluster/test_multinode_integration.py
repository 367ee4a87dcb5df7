"""A job on a real multi-node Ray cluster (infra/local_cluster.py: a head and two worker
nodes, `ray.cluster_utils.Cluster`), corpus, model and output on the S3 emulator. A worker
node running a model actor is killed mid-run; after at most one re-run every item is
exactly once in `transcripts` or `errors`, nothing is left that no commit covers, and each
node copied the model once into its own cache (the nodes share no model cache)."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import time
from pathlib import Path

import fsspec
import pytest

from pipeline.io.completion import PENDING_SUFFIX
from pipeline.io.storage import arrow_filesystem
from pipeline.io.tables import parquet_files, read_table
from pipeline.io.units import item_id
from pipeline.spec import StorageOptions
from pipeline.testing.corpus import build_files_corpus
from pipeline.testing.tiny_ctc import build_tiny_ctc
from tests.cluster.raynodes import node_env, start_local_cluster
from tests.conftest import BIN
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

STAGE = "Stage_ctc"  # the actor class name the runner gives the ctc task's pool
N_ITEMS = 72  # + 7 broken + 1 missing: enough work left when the kill lands


def _spec(bucket: str, endpoint: str, model_endpoint: str) -> dict:
    storage = {"endpoint_url": endpoint}
    return {
        "name": "multinode",
        "input": {
            "uri": f"s3://{bucket}/corpus/",
            "manifest": f"s3://{bucket}/corpus/manifest.jsonl",
            "storage": storage,
        },
        "tasks": [
            {
                "kind": "ctc",
                "model": f"s3://{bucket}/models/w2v",
                # The model is read through a proxy that logs every request it forwards.
                "storage": {"endpoint_url": model_endpoint},
                "batch_size": 4,
                "num_cpus": 1,
                "actors": 2,
            }
        ],
        "output": {"uri": f"s3://{bucket}/out", "storage": storage},
        "runtime": {"read_batch_items": 4, "decode_batch_size": 4, "progress_interval_s": 1},
    }


def _stage_counts(log: Path) -> dict[str, int]:
    """Items past each stage, from the driver's last progress line ("stages: decode 8 ctc 4")."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "stages:" in ln]
    if not lines:
        return {}
    words = lines[-1].split("stages:")[1].split()
    return {name: int(n) for name, n in zip(words[::2], words[1::2], strict=False)}


def _stage_actors(dashboard: str) -> list:
    """Our model actors (alive and dead) from the Ray state API; [] while it is starting."""
    from ray.util.state import list_actors

    try:
        actors = list_actors(
            address=dashboard, detail=True, limit=1000, raise_on_missing_output=False
        )
    except Exception:  # the dashboard answers a few seconds after the head is up
        return []
    return [a for a in actors if STAGE in a.class_name]


def _victim(cluster, log: Path, driver, total: int, timeout_s: float = 600) -> tuple[str, dict]:
    """A worker node whose model actor is alive (so its copy of the model is complete), while
    items flow and the model stage has work left; with the stage counts at that moment."""
    names = {n["node_id"]: n["name"] for n in cluster.info["nodes"]}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and driver.poll() is None:
        counts = _stage_counts(log)
        if counts.get("decode", 0) > 0 and counts.get("ctc", 0) < total:
            alive = [
                a.node_id for a in _stage_actors(cluster.info["dashboard"]) if a.state == "ALIVE"
            ]
            on_workers = [names[n] for n in alive if n in names]
            if on_workers:
                return on_workers[0], counts
        time.sleep(0.1)
    raise AssertionError(
        f"no model actor alive mid-run (driver rc {driver.poll()}): {_stage_counts(log)}"
    )


def _cache_copies(folder: Path) -> list[Path]:
    """The complete model copies in a node's cache, and no half-made ones."""
    assert not list(folder.glob(".*")), f"a half-made copy is left in {folder}"
    return [p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()]


def _expected(items, bucket: str) -> dict[str, str]:
    return {item_id(f"s3://{bucket}/corpus/{it.path}", ""): it.expected for it in items}


def _landed(endpoint: str, bucket: str) -> tuple[list[str], dict[str, str]]:
    fs, root = arrow_filesystem(f"s3://{bucket}/out", StorageOptions(endpoint_url=endpoint))
    transcripts, errors = (read_table(fs, root, t) for t in ("transcripts", "errors"))
    ok = [] if transcripts is None else transcripts.column("item_id").to_pylist()
    if errors is None:
        return ok, {}
    ids, codes = (errors.column(c).to_pylist() for c in ("item_id", "error_code"))
    return ok + ids, dict(zip(ids, codes, strict=True))


def _checkpoints(endpoint: str, bucket: str) -> tuple[set[str], set[str]]:
    """(pending, committed) checkpoint base names: a write task's checkpoint carries its
    base name, which every file it writes starts with (runner/datasink.py)."""
    fs, root = arrow_filesystem(f"s3://{bucket}/out", StorageOptions(endpoint_url=endpoint))
    names = {Path(f).name for f in parquet_files(fs, f"{root}/_checkpoint")}
    pending = {n.removesuffix(PENDING_SUFFIX) for n in names if n.endswith(PENDING_SUFFIX)}
    return pending, {n.removesuffix(".parquet") for n in names if not n.endswith(PENDING_SUFFIX)}


def _files_of(endpoint: str, bucket: str, bases: set[str]) -> list[str]:
    """The output files (any table, completion records too) written by these writes."""
    fs, root = arrow_filesystem(f"s3://{bucket}/out", StorageOptions(endpoint_url=endpoint))
    return [
        f
        for table in ("transcripts", "errors", "_completion")
        for f in parquet_files(fs, f"{root}/{table}")
        if any(Path(f).name.startswith(b) for b in bases)
    ]


def test_a_node_killed_mid_run_loses_and_doubles_nothing_and_each_node_caches_the_model(
    s3_bucket, tmp_path
):
    s3_endpoint, bucket = s3_bucket
    s3 = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_endpoint})
    model = build_tiny_ctc(str(tmp_path / "w2v"), arch="wav2vec2", seed=3)
    s3.put(model, f"{bucket}/models/w2v", recursive=True)
    items = build_files_corpus(
        f"{bucket}/corpus", n_items=N_ITEMS, seed=4, broken=True, manifest="jsonl", fs=s3
    )
    expected = _expected(items, bucket)
    # Nobody may fall back on the default cache (~/.cache/audiobatch/models): HOME is ours.
    home = tmp_path / "home"
    home.mkdir()
    env = node_env({"HOME": str(home)})

    with FaultProxy(s3_endpoint) as proxy:
        spec_path = tmp_path / "job.yaml"
        spec_path.write_text(json.dumps(_spec(bucket, s3_endpoint, proxy.url)))
        cluster = start_local_cluster(tmp_path, workers=2, cpus_per_worker=2, env=env)
        try:
            cli = [
                str(BIN / "audiobatch"),
                "run",
                str(spec_path),
                "--address",
                cluster.info["address"],
            ]
            run1 = tmp_path / "run1.log"
            with run1.open("w") as log:
                driver = subprocess.Popen(
                    cli, stdout=log, stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"}
                )
                victim, at_kill = _victim(cluster, run1, driver, len(expected))
                partial = len(_landed(s3_endpoint, bucket)[0])
                cluster.kill(victim)
                first = driver.wait(timeout=900)
            # The run finishes on the other node, or fails cleanly (exit 6, a failed runs row).
            assert first in (0, 6), run1.read_text()[-3000:]
            # The writes the kill cut off: their checkpoints are still pending.
            cut_off, _ = _checkpoints(s3_endpoint, bucket)
            again = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=900)
            assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
            actors = _stage_actors(cluster.info["dashboard"])
        finally:
            cluster.stop()
        weight_gets = [
            r
            for r in proxy.faults.requests
            if re.match(rf"GET /{bucket}/models/w2v/model\.safetensors(\?|$)", r)
        ]

    # Mid-run: items were flowing, the model stage had work left, not everything had landed.
    assert at_kill.get("ctc", 0) < len(expected) and partial < len(expected), (at_kill, partial)
    landed, codes = _landed(s3_endpoint, bucket)
    doubled = [i for i, n in collections.Counter(landed).items() if n > 1]
    assert not doubled, f"{len(doubled)} items landed twice"
    assert sorted(landed) == sorted(expected), "every item exactly once in transcripts or errors"
    assert codes == {i: o for i, o in expected.items() if o != "ok"}
    # The re-run deleted what the cut-off writes had written, and left nothing pending. (A
    # file's own committed checkpoint cannot be asked for: a successful run merges its
    # writes' completion records, and their checkpoints, into one, io/completion.py.)
    pending, _ = _checkpoints(s3_endpoint, bucket)
    assert not pending, "a pending checkpoint is left"
    assert not _files_of(s3_endpoint, bucket, cut_off), "files of a write that never committed"
    fs, root = arrow_filesystem(f"s3://{bucket}/out", StorageOptions(endpoint_url=s3_endpoint))
    runs = sorted(read_table(fs, root, "runs").to_pylist(), key=lambda r: r["started_at"])
    assert [r["status"] for r in runs][-1] == "succeeded" and len(runs) == 2

    # Work ran on both worker nodes: the victim's actor, and the actors that finished the run.
    names = {n["node_id"]: n["name"] for n in cluster.info["nodes"]}
    ran_on = {victim} | {names[a.node_id] for a in actors if a.node_id in names}
    assert ran_on == {"node_1", "node_2"}
    # Each node copied the model once into its own cache, whatever number of actors (and
    # restarts) loaded it there; nobody used the default cache.
    for name, node in cluster.nodes.items():
        assert len(_cache_copies(Path(node["cache"]))) == 1, f"{name}: one copy in its own cache"
    assert len(weight_gets) == 2, weight_gets
    assert not (home / ".cache" / "audiobatch").exists()
