"""`audiobatch submit` against a real Ray head with its dashboard on 127.0.0.1: a job over a
corpus made here, its tables read back; a failing job; specs that must never be sent."""

from __future__ import annotations

import collections
import socket
import subprocess
import time

import pyarrow.fs as pafs
import pytest
import yaml

from pipeline.io.tables import read_table
from pipeline.testing.corpus import build_files_corpus
from pipeline.testing.tiny_ctc import build_tiny_ctc
from tests.cluster.raynodes import node_env, start_head
from tests.conftest import BIN

pytestmark = pytest.mark.integration
CLI = str(BIN / "audiobatch")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submit-cluster")
    head, _, url = start_head(folder, num_cpus=2, env=node_env())
    try:
        yield url
    finally:
        head.kill()


@pytest.fixture(scope="module")
def client(dashboard):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard)


def _spec_file(path, name, corpus, out, model):
    spec = {
        "name": name,
        "input": {"uri": str(corpus), "manifest": f"{corpus}/manifest.jsonl"},
        "tasks": [{"kind": "ctc", "model": str(model), "batch_size": 8, "num_cpus": 0.5}],
        "output": {"uri": str(out)},
        "runtime": {"read_batch_items": 8, "decode_batch_size": 8, "progress_interval_s": 2},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def _submit(*args, timeout=300):
    return subprocess.run([CLI, "submit", *args], capture_output=True, text=True, timeout=timeout)


def _job_ids(client) -> set[str]:
    return {j.submission_id for j in client.list_jobs()}


def test_a_submitted_job_runs_on_the_cluster_and_writes_its_tables(dashboard, client, tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = build_files_corpus(str(corpus), n_items=12, seed=5, broken=True, manifest="jsonl")
    model = build_tiny_ctc(str(tmp_path / "w2v"), arch="wav2vec2", seed=3)
    spec = _spec_file(tmp_path / "job.yaml", "submit-it", corpus, out, model)

    done = _submit(str(spec), "--address", dashboard, "--allow-local-paths")
    assert done.returncode == 0, done.stderr
    job_id = next(w for w in done.stdout.split() if w.startswith("submit-it-"))
    assert f"ray job logs --address {dashboard} --follow {job_id}" in done.stdout
    assert f"ray job stop --address {dashboard} {job_id}" in done.stdout
    # The spec travelled with the job: the submitter's copy can go at once.
    spec.unlink()
    client_info = _until_done(client, job_id)
    assert client_info.status == "SUCCEEDED", client.get_job_logs(job_id)[-3000:]
    assert client_info.entrypoint.endswith("| audiobatch run /dev/stdin")

    fs = pafs.LocalFileSystem()
    transcripts, errors = (read_table(fs, str(out), t) for t in ("transcripts", "errors"))
    landed = transcripts.column("item_id").to_pylist() + errors.column("item_id").to_pylist()
    assert len(landed) == len(items) and not [
        i for i, n in collections.Counter(landed).items() if n > 1
    ]
    runs = read_table(fs, str(out), "runs").to_pylist()
    printed_hash = done.stdout.split("spec hash ")[1].split(")")[0]
    assert [r["spec_hash"] for r in runs] == [printed_hash]
    assert client_info.metadata["audiobatch_spec_hash"] == printed_hash


def _until_done(client, job_id, timeout_s=240):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.get_job_info(job_id)
        if info.status.is_terminal():
            return info
        time.sleep(1)
    raise TimeoutError(f"job {job_id} still {info.status} after {timeout_s} s")


def test_wait_follows_the_logs_and_exits_with_the_status(dashboard, tmp_path):
    corpus = tmp_path / "corpus"
    build_files_corpus(str(corpus), n_items=3, seed=1, manifest="jsonl")
    model = build_tiny_ctc(str(tmp_path / "w2v"), arch="wav2vec2", seed=3)
    ok = _spec_file(tmp_path / "ok.yaml", "wait-ok", corpus, tmp_path / "out", model)
    done = _submit(str(ok), "--address", dashboard, "--allow-local-paths", "--wait")
    assert done.returncode == 0, done.stderr
    assert "audiobatch run " in done.stdout and "succeeded: 3 items this run" in done.stdout

    # Valid here, failing there: the corpus is not on the cluster's disk.
    bad = _spec_file(tmp_path / "bad.yaml", "wait-bad", tmp_path / "gone", tmp_path / "o2", model)
    failed = _submit(str(bad), "--address", dashboard, "--allow-local-paths", "--wait")
    assert failed.returncode == 1
    assert "FAILED" in failed.stderr and "last " in failed.stderr
    assert str(tmp_path / "gone") in failed.stderr.split("lines of its log:")[1]


def test_specs_that_must_not_be_sent_are_not(dashboard, client, tmp_path):
    before = _job_ids(client)
    spec = _spec_file(
        tmp_path / "job.yaml", "local", tmp_path / "c", tmp_path / "o", tmp_path / "m"
    )
    refused = _submit(str(spec), "--address", dashboard)
    assert refused.returncode == 2
    assert "input.uri" in refused.stderr and "--allow-local-paths" in refused.stderr
    invalid = _submit(
        str(spec), "--address", dashboard, "--allow-local-paths", "--set", "tasks.0.batch_size=0"
    )
    assert invalid.returncode == 2 and "tasks.0.ctc.batch_size" in invalid.stderr
    assert _job_ids(client) == before, "nothing reached the cluster"


def _silent_listener():
    """A port that accepts connections and never answers: a hung head, or a firewall
    that lets the handshake through."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


@pytest.mark.parametrize("kind", ["closed port", "silent listener"])
def test_an_unreachable_address_fails_within_30_s_naming_it(tmp_path, kind):
    from tests.conftest import _free_port

    listener = _silent_listener() if kind == "silent listener" else None
    port = listener.getsockname()[1] if listener else _free_port()
    address = f"http://127.0.0.1:{port}"
    spec = _spec_file(tmp_path / "job.yaml", "x", "s3://b/c", "s3://b/o", "s3://b/m")
    try:
        done = _submit(str(spec), "--address", address, timeout=30)
    finally:
        if listener:
            listener.close()
    assert done.returncode == 7
    assert address in done.stderr and "cannot reach the Ray dashboard" in done.stderr
