"""End to end on a real local Ray cluster and an S3 emulator: every format, broken
files mixed in, exactly once across re-runs and after the driver is killed."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pyarrow.fs as pafs
import pytest

from pipeline.io.storage import arrow_filesystem
from pipeline.io.tables import read_table
from pipeline.io.units import item_id
from pipeline.reports.report import ReportRequest, build_report
from pipeline.runner import run_job
from pipeline.spec import StorageOptions, parse_spec
from pipeline.testing.corpus import (
    build_files_corpus,
    build_parquet_corpus,
    build_webdataset_corpus,
)
from pipeline.testing.tiny_ctc import build_tiny_ctc

pytestmark = pytest.mark.integration


def _s3fs(endpoint):
    return fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})


def _spec(input_uri, output_uri, model, endpoint=None, **input_extra):
    storage = {"endpoint_url": endpoint} if endpoint else {}
    return parse_spec(
        {
            "name": "it",
            "input": {"uri": input_uri, "storage": storage, **input_extra},
            "tasks": [{"kind": "ctc", "model": model, "batch_size": 8, "chunk_length_s": 4}],
            "output": {"uri": output_uri, "storage": storage},
            "runtime": {"read_batch_items": 8, "decode_batch_size": 8, "progress_interval_s": 60},
        }
    )


def _tables(uri, endpoint=None):
    fs, root = arrow_filesystem(uri, StorageOptions(endpoint_url=endpoint))
    return fs, root, read_table(fs, root, "transcripts"), read_table(fs, root, "errors")


def _ids(table):
    return [] if table is None else table.column("item_id").to_pylist()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_ctc(str(tmp_path_factory.mktemp("models") / "w2v"), arch="wav2vec2", seed=3)


def _expected(items, source_of):
    """item_id -> expected outcome ("ok" or an error code) for a corpus builder's items."""
    return {item_id(*source_of(it)): it.expected for it in items}


@pytest.mark.parametrize("fmt", ["files", "webdataset", "parquet"])
def test_s3_corpus_lands_exactly_once_with_errors_recorded(ray_address, s3_bucket, tiny_model, fmt):
    endpoint, bucket = s3_bucket
    fs = _s3fs(endpoint)
    root = f"{bucket}/corpus"
    fs.put(tiny_model, f"{bucket}/models/w2v", recursive=True)
    if fmt == "files":
        items = build_files_corpus(root, n_items=14, seed=1, broken=True, manifest="jsonl", fs=fs)
        expected = _expected(items, lambda it: (f"s3://{root}/{it.path}", ""))
        extra = {"manifest": f"s3://{root}/manifest.jsonl"}
    elif fmt == "webdataset":
        items = build_webdataset_corpus(
            root, n_shards=2, items_per_shard=7, seed=1, broken=True, fs=fs
        )
        expected = _expected(items, lambda it: (f"s3://{root}/{it.shard}", it.key))
        extra = {}
    else:
        items = build_parquet_corpus(
            root, n_shards=2, items_per_shard=7, seed=1, broken=True, fs=fs
        )
        rows_in_shard = collections.Counter()

        def row_key(it):  # parquet members are row indices within their shard
            rows_in_shard[it.shard] += 1
            return f"s3://{root}/{it.shard}", f"row={rows_in_shard[it.shard] - 1}"

        expected = _expected(items, row_key)
        extra = {}
    out = f"s3://{bucket}/out"
    spec = _spec(f"s3://{root}/", out, f"s3://{bucket}/models/w2v", endpoint, **extra)

    result = run_job(spec, out=lambda _: None)
    assert result.status == "succeeded"
    _, _, transcripts, errors = _tables(out, endpoint)
    landed = _ids(transcripts) + _ids(errors)
    assert sorted(landed) == sorted(expected), "every item exactly once in transcripts or errors"
    assert {i: "ok" for i in _ids(transcripts)} == {i: o for i, o in expected.items() if o == "ok"}
    codes = dict(zip(_ids(errors), errors.column("error_code").to_pylist(), strict=True))
    assert codes == {i: o for i, o in expected.items() if o != "ok"}
    assert all(errors.column("error_message").to_pylist())

    # Corpus WER in the report is total edits over total reference words of the table rows.
    fs_out, root_out, _, _ = _tables(out, endpoint)
    report = build_report(ReportRequest(out, StorageOptions(endpoint_url=endpoint)))["tasks"]["ctc"]
    rows = transcripts.to_pylist()
    edits = sum(r["substitutions"] + r["deletions"] + r["insertions"] for r in rows)
    assert report["wer"] == pytest.approx(edits / sum(r["ref_words"] for r in rows))
    assert all(r["text"] is not None and r["duration_s"] > 0 for r in rows)
    # The query views read the same run: every row carries its task inside the file, too.
    from pipeline.query import connect

    con = connect(out, StorageOptions(endpoint_url=endpoint))
    assert con.sql("SELECT wer FROM corpus_wer").fetchall() == [(pytest.approx(report["wer"]),)]
    assert con.sql("SELECT count(*) FROM errors_open").fetchall() == [(len(_ids(errors)),)]
    import pyarrow.parquet as pq

    from pipeline.io.tables import parquet_files

    one = parquet_files(fs_out, f"{root_out}/transcripts")[0]
    assert set(pq.read_table(one, filesystem=fs_out).column("task").to_pylist()) == {"ctc"}

    # A second run of the same spec finds everything done and adds nothing.
    again = run_job(spec, out=lambda _: None)
    assert again.counters.items == 0
    _, _, transcripts2, errors2 = _tables(out, endpoint)
    assert sorted(_ids(transcripts2) + _ids(errors2)) == sorted(expected)


def _committed(out: Path) -> int:
    return len(
        [
            p
            for p in (out / "_checkpoint").glob("*.parquet")
            if not p.name.endswith(".pending.parquet")
        ]
    )


def test_killed_driver_then_rerun_leaves_each_item_once(ray_address, tmp_path, tiny_model):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = build_files_corpus(str(corpus), n_items=400, seed=2, broken=True, manifest="jsonl")
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(
        "name: kill\n"
        f"input: {{uri: '{corpus}', manifest: '{corpus}/manifest.jsonl'}}\n"
        f"tasks: [{{kind: ctc, model: '{tiny_model}', batch_size: 8}}]\n"
        f"output: {{uri: '{out}', lease_ttl_s: 2}}\n"
        "runtime: {read_batch_items: 8, decode_batch_size: 8, progress_interval_s: 1}\n"
    )
    cli = [
        str(Path(sys.executable).parent / "audiobatch"),
        "run",
        str(spec_path),
        "--address",
        ray_address,
    ]
    proc = subprocess.Popen(
        cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while _committed(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver process, not an exception
    proc.wait()
    fs = pafs.LocalFileSystem()
    partial = len(_ids(read_table(fs, str(out), "transcripts"))) + len(
        _ids(read_table(fs, str(out), "errors"))
    )
    assert 0 < partial < len(items), f"the kill must land mid-run (had {partial} of {len(items)})"

    time.sleep(2.5)  # the killed driver's lease expires (tests/runner/test_lease_integration.py)
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    landed = _ids(read_table(fs, str(out), "transcripts")) + _ids(
        read_table(fs, str(out), "errors")
    )
    dupes = [i for i, n in collections.Counter(landed).items() if n > 1]
    assert not dupes, f"{len(dupes)} items landed twice"
    assert len(landed) == len(items)
    assert not list(out.rglob("*.tmp")), "no half-written files are left behind"
    # The killed run is in `runs` too, recorded by the re-run.
    statuses = sorted(read_table(fs, str(out), "runs").column("status").to_pylist())
    assert statuses == ["interrupted", "succeeded"]
