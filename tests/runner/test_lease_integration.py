"""One run at a time: two `audiobatch run` processes started together on one output, one
refused with exit code 3 naming the other; the winner killed with SIGKILL; the next run
takes the lease over after its expiry and finishes every item exactly once."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipeline.io.lease import LEASE_DIR
from pipeline.io.tables import read_table
from pipeline.testing.corpus import build_files_corpus
from pipeline.testing.tiny_ctc import build_tiny_ctc

pytestmark = pytest.mark.integration

TTL_S = 4


def _landed(out: Path) -> list[str]:
    fs = pafs.LocalFileSystem()
    tables = [read_table(fs, str(out), t) for t in ("transcripts", "errors")]
    return [i for t in tables if t is not None for i in t.column("item_id").to_pylist()]


def _lease(out: Path) -> dict | None:
    files = sorted((out / LEASE_DIR).glob("*.json")) if (out / LEASE_DIR).exists() else []
    return json.loads(files[-1].read_text()) if files else None


def test_concurrent_runs_one_refused_and_killed_holder_taken_over(ray_address, tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = build_files_corpus(str(corpus), n_items=48, seed=4, broken=False, manifest="jsonl")
    model = build_tiny_ctc(str(tmp_path / "w2v"), arch="wav2vec2", seed=3)
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: lease\n"
        f"input: {{uri: '{corpus}', manifest: '{corpus}/manifest.jsonl'}}\n"
        f"tasks: [{{kind: ctc, model: '{model}', batch_size: 4}}]\n"
        f"output: {{uri: '{out}', lease_ttl_s: {TTL_S}}}\n"
        "runtime: {read_batch_items: 4, decode_batch_size: 4, progress_interval_s: 60}\n"
    )
    cli = [str(Path(sys.executable).parent / "audiobatch"), "run", str(spec)]
    cli += ["--address", ray_address]
    procs = [
        subprocess.Popen(
            cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + 120
    while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    loser = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not loser)
    _, err = loser.communicate()
    holder = _lease(out)
    assert loser.returncode == 3, err
    assert holder is not None and f"in use by run {holder['run_id']}" in err
    assert f"pid {winner.pid}" in err, "the message names the live holder"

    # Kill the holder mid-run: no release, the heartbeat just stops.
    while not _landed(out) and winner.poll() is None and time.monotonic() < deadline + 120:
        time.sleep(0.05)
    os.killpg(winner.pid, signal.SIGKILL)
    winner.communicate()
    assert 0 < len(_landed(out)) < len(items), "the kill must land mid-run"
    killed = _lease(out)
    assert killed["run_id"] == holder["run_id"] and not killed["released"]

    time.sleep(max(killed["expires_at"] - time.time(), 0) + 0.5)
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"took over the lease of run {holder['run_id']}" in done.stdout
    landed = _landed(out)
    assert not [i for i, n in collections.Counter(landed).items() if n > 1]
    assert len(landed) == len(items)
    runs = {
        r["run_id"]: r for r in read_table(pafs.LocalFileSystem(), str(out), "runs").to_pylist()
    }
    # The refused run wrote nothing; the killed one is recorded as interrupted by the next.
    assert sorted(r["status"] for r in runs.values()) == ["interrupted", "succeeded"]
    assert runs[holder["run_id"]]["status"] == "interrupted"
    night = next(r for r in runs.values() if r["status"] == "succeeded")
    assert night["already_done"] + night["items"] == len(items)
    assert night["tasks"] == [{"task": "ctc", "ok": night["items"], "failed": 0}]
    assert night["units"] >= 1 and night["new_items"] == night["items"]
    history = subprocess.run([cli[0], "runs", str(out)], capture_output=True, text=True)
    assert history.returncode == 0 and night["run_id"] in history.stdout
    assert _lease(out)["released"] is True
