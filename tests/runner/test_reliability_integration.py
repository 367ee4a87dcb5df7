"""The fault matrix on a real local Ray cluster (README "Reliability"): hostile inputs,
storage faults and killed work, each ending with every item exactly once in a table."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from pipeline.io.storage import arrow_filesystem
from pipeline.io.tables import read_table
from pipeline.runner import RunFailed, run_job
from pipeline.spec import StorageOptions, parse_spec
from pipeline.testing.corpus import build_files_corpus
from pipeline.testing.tiny_ctc import build_tiny_ctc
from tests.faultproxy import FaultProxy, Faults
from tests.stages.test_decode import hostile_wav

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_ctc(str(tmp_path_factory.mktemp("models") / "w2v"), arch="wav2vec2", seed=3)


def _spec(input_uri: str, output_uri: str, model: str, *, decode=None, **input_extra):
    return parse_spec(
        {
            "name": "rel",
            "input": {"uri": input_uri, **input_extra},
            "decode": decode or {},
            "tasks": [{"kind": "ctc", "model": model, "batch_size": 4, "chunk_length_s": 4}],
            "output": {"uri": output_uri},
            "runtime": {"read_batch_items": 8, "decode_batch_size": 8, "progress_interval_s": 60},
        }
    )


def _landed(out: str) -> tuple[list[str], dict[str, str]]:
    fs, root = arrow_filesystem(out)
    rows, errors = read_table(fs, root, "transcripts"), read_table(fs, root, "errors")
    ids = [] if rows is None else rows.column("item_id").to_pylist()
    codes = (
        {}
        if errors is None
        else dict(
            zip(
                errors.column("source_uri").to_pylist(),
                errors.column("error_code").to_pylist(),
                strict=True,
            )
        )
    )
    return ids + ([] if errors is None else errors.column("item_id").to_pylist()), codes


def test_hostile_files_that_decode_to_far_more_than_their_size_are_cut_into_blocks(
    ray_address, tmp_path, tiny_model
):
    corpus = tmp_path / "corpus"
    items = build_files_corpus(str(corpus), n_items=8, seed=4)
    for i in range(8):  # 644 bytes each, 300 s (18 MiB) at 16 kHz
        (corpus / f"hostile{i}.wav").write_bytes(hostile_wav(300))
    out = str(tmp_path / "out")
    spec = _spec(str(corpus), out, tiny_model, decode={"max_batch_mb": 20})
    result = run_job(spec, out=lambda _: None)
    assert result.status == "succeeded"
    landed, codes = _landed(out)
    assert len(landed) == len(set(landed)) == len(items) + 8
    assert not codes


def _s3_spec(bucket: str, input_url: str, output_url: str, model: str, **storage):
    return parse_spec(
        {
            "name": "rel",
            "input": {
                "uri": f"s3://{bucket}/corpus/",
                "manifest": f"s3://{bucket}/corpus/manifest.jsonl",
                "storage": {"endpoint_url": input_url, **storage},
            },
            "tasks": [{"kind": "ctc", "model": model, "batch_size": 8, "chunk_length_s": 4}],
            "output": {"uri": f"s3://{bucket}/out/", "storage": {"endpoint_url": output_url}},
            "runtime": {"read_batch_items": 8, "decode_batch_size": 8, "progress_interval_s": 60},
        }
    )


def _s3_landed(bucket: str, endpoint: str) -> tuple[list[str], dict[str, str], list[dict]]:
    fs, root = arrow_filesystem(f"s3://{bucket}/out/", StorageOptions(endpoint_url=endpoint))
    rows, errors = read_table(fs, root, "transcripts"), read_table(fs, root, "errors")
    runs = read_table(fs, root, "runs")
    ids = [] if rows is None else rows.column("item_id").to_pylist()
    codes = (
        {}
        if errors is None
        else dict(zip(_col(errors, "source_uri"), _col(errors, "error_code"), strict=True))
    )
    return ids + _col(errors, "item_id"), codes, [] if runs is None else runs.to_pylist()


def _col(table, name: str) -> list:
    return [] if table is None else table.column(name).to_pylist()


def test_r5_503s_and_resets_on_input_and_output_leave_every_item_exactly_once(
    ray_address, s3_bucket, tiny_model
):
    endpoint, bucket = s3_bucket
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})
    items = build_files_corpus(f"{bucket}/corpus", n_items=30, seed=6, broken=True, fs=fs)
    with FaultProxy(endpoint, Faults(error_share=0.2, reset_share=0.05, seed=6)) as proxy:
        result = run_job(_s3_spec(bucket, proxy.url, proxy.url, tiny_model), out=lambda _: None)
        counts = dict(proxy.faults.counts)
    assert result.status == "succeeded" and counts["error"] > 20
    landed, codes, _ = _s3_landed(bucket, endpoint)
    assert len(landed) == len(set(landed)) == len(items)
    expected = collections.Counter(str(it.expected) for it in items if it.expected != "ok")
    assert collections.Counter(codes.values()) == expected


def test_r7_a_stalled_get_becomes_read_failed_and_the_run_succeeds(
    ray_address, s3_bucket, tiny_model
):
    endpoint, bucket = s3_bucket
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})
    items = build_files_corpus(f"{bucket}/corpus", n_items=10, seed=7, fs=fs)
    stalled = items[3].path
    with FaultProxy(endpoint, Faults(stall=rf"GET /{bucket}/corpus/{re.escape(stalled)}")) as px:
        spec = _s3_spec(bucket, px.url, endpoint, tiny_model, timeout_s=5)
        result = run_job(spec, out=lambda _: None)
    assert result.status == "succeeded"
    landed, codes, _ = _s3_landed(bucket, endpoint)
    assert len(landed) == len(set(landed)) == len(items)
    assert codes == {f"s3://{bucket}/corpus/{stalled}": "read_failed"}


def test_r7_a_stalled_output_write_fails_the_run_with_a_failed_runs_row(
    ray_address, s3_bucket, tiny_model
):
    endpoint, bucket = s3_bucket
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})
    build_files_corpus(f"{bucket}/corpus", n_items=6, seed=8, fs=fs)
    with FaultProxy(endpoint, Faults(stall=rf"PUT /{bucket}/out/transcripts/")) as px:
        spec = _s3_spec(bucket, endpoint, px.url, tiny_model)
        spec = spec.model_copy(
            update={
                "output": spec.output.model_copy(
                    update={"storage": StorageOptions(endpoint_url=px.url, timeout_s=5)}
                )
            }
        )
        with pytest.raises(RunFailed, match="no answer within 5 s"):
            run_job(spec, out=lambda _: None)
    _, _, runs = _s3_landed(bucket, endpoint)
    assert [r["status"] for r in runs] == ["failed"]


def test_s1_canary_credentials_are_in_no_log_table_report_or_output(
    ray_address, s3_bucket, tmp_path, tiny_model
):
    """A run on S3 with canary credentials, which the cluster's workers and the driver hold
    (tests/conftest.py): they appear in none of the cluster's logs, the command's output,
    or any object the run wrote."""
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    if "CANARY" not in key.upper():
        pytest.skip("real credentials in the environment: no canary to look for")
    endpoint, bucket = s3_bucket
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})
    build_files_corpus(f"{bucket}/corpus", n_items=6, seed=9, broken=True, fs=fs)
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: canary\n"
        f"input: {{uri: 's3://{bucket}/corpus/', manifest: 's3://{bucket}/corpus/manifest.jsonl', "
        f"storage: {{endpoint_url: '{endpoint}'}}}}\n"
        f"tasks: [{{kind: ctc, model: '{tiny_model}', batch_size: 4, chunk_length_s: 4}}]\n"
        f"output: {{uri: 's3://{bucket}/out/', storage: {{endpoint_url: '{endpoint}'}}}}\n"
        # the corpus is 8 broken files of 14: exit 0 needs a share above the default 0.5
        "runtime: {progress_interval_s: 1, max_error_share: 1.0}\n"
    )
    cli = str(Path(sys.executable).parent / "audiobatch")
    done = subprocess.run(
        [cli, "run", str(spec), "--address", ray_address],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    texts = {"stdout": done.stdout, "stderr": done.stderr}
    ray_temp = Path("/tmp") / f"ab-ray-{os.getpid()}"  # the cluster's --temp-dir (conftest)
    logs = [p for p in ray_temp.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix in (".log", ".out", ".err") for p in logs), "the cluster wrote logs"
    texts |= {str(p): p.read_bytes().decode("latin-1") for p in logs if p.stat().st_size < 2**26}
    objects = fs.find(f"{bucket}/out")
    assert any("transcripts" in o for o in objects) and any("report" in o for o in objects)
    texts |= {o: fs.cat_file(o).decode("latin-1") for o in objects}
    leaks = [name for name, text in texts.items() if key in text or secret in text]
    assert leaks == [], f"credentials found in {leaks[:5]}"
