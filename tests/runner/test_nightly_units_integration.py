"""Nightly re-runs at the level of work units and sources, on a real local Ray.

- A shard whose every item an earlier run settled is not read again: on local disk the
  settled shards are overwritten with garbage of the same size and their mtime put
  back, so reading one would make a `shard_corrupt` row; on the S3 emulator the
  requests are counted through the loopback proxy. A shard added later is the only unit.
- A night with nothing to do imports no Ray at all (checked in a fresh process).
- A changed source is listed in the runs row and the report; with
  `incremental.reprocess_changed: true` its items are done again and the new rows win
  in `latest`, nothing twice in `latest` or `errors_open`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipeline.io.tables import read_table
from pipeline.runner import run_job
from pipeline.spec import parse_spec
from pipeline.testing.corpus import (
    build_files_corpus,
    build_parquet_corpus,
    build_webdataset_corpus,
)
from pipeline.testing.tiny_ctc import build_tiny_ctc
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUILDERS = {"webdataset": build_webdataset_corpus, "parquet": build_parquet_corpus}
ENDING = {"webdataset": "tar", "parquet": "parquet"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_ctc(str(tmp_path_factory.mktemp("models") / "w2v"), arch="wav2vec2", seed=3)


def _spec_dict(corpus: str, out: str, model: str, fmt: str, endpoint=None, reprocess=False):
    storage = {"endpoint_url": endpoint} if endpoint else {}
    return {
        "name": "nightly-units",
        "input": {"uri": corpus, "format": fmt, "storage": storage},
        "tasks": [
            {
                "kind": "ctc",
                "name": "ctc",
                "model": model,
                "batch_size": 8,
                "chunk_length_s": 4,
                "num_cpus": 0.5,
            }
        ],
        "output": {"uri": out, "storage": storage},
        "runtime": {"read_batch_items": 4, "decode_batch_size": 4, "progress_interval_s": 60},
        "incremental": {"reprocess_changed": reprocess},
    }


def _spec(*args, **kwargs):
    return parse_spec(_spec_dict(*args, **kwargs))


def _last_run(out: Path) -> dict:
    runs = read_table(pafs.LocalFileSystem(), str(out), "runs").to_pylist()
    return max(runs, key=lambda r: r["started_at"])


def _garble_keeping_stat(path: Path) -> None:
    """Same size and mtime, other bytes: only reading the file can tell."""
    st = path.stat()
    path.write_bytes(b"\x00garbage" * (st.st_size // 8) + b"\x00" * (st.st_size % 8))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _add_shard(corpus: Path, tmp: Path, fmt: str, name: str) -> int:
    """One more shard of 2 items under `corpus`; its item count."""
    more = tmp / f"more-{name}"
    items = BUILDERS[fmt](str(more), n_shards=1, items_per_shard=2, seed=11)
    shutil.move(more / f"shard-000000.{ENDING[fmt]}", corpus / name)
    return len(items)


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_settled_shards_are_not_read_and_a_new_shard_is_the_only_unit(
    ray_address, tmp_path, tiny_model, fmt
):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = BUILDERS[fmt](str(corpus), n_shards=2, items_per_shard=3, seed=8)
    spec = _spec(str(corpus), str(out), tiny_model, fmt)
    assert run_job(spec, out=lambda _: None, report=False).counters.items == len(items)
    shards = sorted(corpus.glob(f"shard-*.{ENDING[fmt]}"))
    for shard in shards:
        _garble_keeping_stat(shard)

    lines: list[str] = []
    second = run_job(spec, out=lines.append, report=False)
    assert second.counters.items == 0, "a settled shard was read"
    row = _last_run(out)
    assert (row["units"], row["skipped_units"], row["changed_sources"]) == (0, len(shards), [])
    assert any("nothing to do" in line for line in lines)

    added = _add_shard(corpus, tmp_path, fmt, f"shard-000009.{ENDING[fmt]}")
    third = run_job(spec, out=lambda _: None, report=False)
    assert third.counters.items == added
    row = _last_run(out)
    assert (row["units"], row["skipped_units"]) == (1, len(shards))
    errors = read_table(pafs.LocalFileSystem(), str(out), "errors")
    assert errors is None or errors.num_rows == sum(it.expected != "ok" for it in items)


def test_a_night_with_nothing_to_do_imports_no_ray(ray_address, tmp_path, tiny_model):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    build_webdataset_corpus(str(corpus), n_shards=2, items_per_shard=2, seed=9)
    spec = _spec_dict(str(corpus), str(out), tiny_model, "webdataset")
    run_job(parse_spec(spec), out=lambda _: None, report=False)
    code = (
        "import json, sys\n"
        "from pipeline.runner import run_job\n"
        "from pipeline.spec import parse_spec\n"
        "r = run_job(parse_spec(json.loads(sys.argv[1])), out=lambda _: None)\n"
        "print(json.dumps({'items': r.counters.items, 'ray': 'ray' in sys.modules}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"items": 0, "ray": False}


def test_s3_second_night_reads_no_shard_and_a_new_one_alone(ray_address, s3_bucket, tiny_model):
    import s3fs

    endpoint, bucket = s3_bucket
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
    build_webdataset_corpus(f"{bucket}/corpus", n_shards=3, items_per_shard=2, seed=10, fs=fs)
    with FaultProxy(endpoint) as proxy:
        spec = _spec(
            f"s3://{bucket}/corpus", f"s3://{bucket}/out", tiny_model, "webdataset", proxy.url
        )
        assert run_job(spec, out=lambda _: None, report=False).counters.items == 6
        shard_get = re.compile(rf"GET /{bucket}/corpus/(shard-\d+\.tar)")

        def shards_read() -> set[str]:
            return {m.group(1) for r in proxy.faults.requests if (m := shard_get.match(r))}

        proxy.faults.requests.clear()
        assert run_job(spec, out=lambda _: None, report=False).counters.items == 0
        assert shards_read() == set(), "the no-op night fetched shard bytes"

        more = build_webdataset_corpus(
            f"{bucket}/more", n_shards=1, items_per_shard=2, seed=12, fs=fs
        )
        fs.mv(f"{bucket}/more/shard-000000.tar", f"{bucket}/corpus/shard-000007.tar")
        proxy.faults.requests.clear()
        assert run_job(spec, out=lambda _: None, report=False).counters.items == len(more)
        assert shards_read() == {"shard-000007.tar"}


def _views(out: Path, sql: str) -> list[tuple]:
    from pipeline.query import connect

    return connect(str(out)).execute(sql).fetchall()


def test_changed_file_is_listed_then_reprocessed_when_asked(ray_address, tmp_path, tiny_model):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = build_files_corpus(str(corpus), n_items=4, seed=13, broken=False, manifest=None)
    changed, other = corpus / items[0].path, corpus / items[1].path
    spec = _spec(str(corpus), str(out), tiny_model, "files")
    first = run_job(spec, out=lambda _: None, report=False)
    assert first.counters.items == len(items)

    changed.write_bytes(other.read_bytes())  # new content under the old name
    lines: list[str] = []
    second = run_job(spec, out=lines.append)
    assert second.counters.items == 0, "changed sources wait for reprocess_changed"
    assert _last_run(out)["changed_sources"] == [str(changed)]
    assert second.report["runs"][-1]["changed_sources"] == [str(changed)]
    assert any("1 source(s) changed" in line for line in lines)

    again = _spec(str(corpus), str(out), tiny_model, "files", reprocess=True)
    third = run_job(again, out=lambda _: None, report=False)
    assert third.counters.items == 1
    assert _last_run(out)["changed_sources"] == [str(changed)]
    fourth = run_job(again, out=lambda _: None, report=False)
    assert fourth.counters.items == 0
    assert _last_run(out)["changed_sources"] == []

    twice = "SELECT item_id, task, count(*) FROM {} GROUP BY ALL HAVING count(*) > 1"
    assert _views(out, twice.format("latest")) == []
    assert _views(out, twice.format("errors_open")) == []
    newest = _views(out, f"SELECT run_id FROM latest WHERE source_uri = '{changed}'")
    assert newest == [(third.run_id,)]
    rows = _views(out, f"SELECT count(*) FROM transcripts WHERE source_uri = '{changed}'")
    assert rows == [(2,)], "the older row stays in the table (append-only)"


def test_changed_shard_reprocessed_whole(ray_address, tmp_path, tiny_model):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    build_webdataset_corpus(str(corpus), n_shards=2, items_per_shard=3, seed=14)
    spec = _spec(str(corpus), str(out), tiny_model, "webdataset", reprocess=True)
    run_job(spec, out=lambda _: None, report=False)
    shard = corpus / "shard-000001.tar"
    replacement = tmp_path / "other"
    build_webdataset_corpus(str(replacement), n_shards=2, items_per_shard=3, seed=15)
    shutil.copy(replacement / "shard-000001.tar", shard)  # same member keys, other audio

    second = run_job(spec, out=lambda _: None, report=False)
    assert second.counters.items == 3
    row = _last_run(out)
    assert (row["units"], row["skipped_units"], row["changed_sources"]) == (1, 1, [str(shard)])
    twice = "SELECT item_id, task, count(*) FROM latest GROUP BY ALL HAVING count(*) > 1"
    assert _views(out, twice) == []
    assert run_job(spec, out=lambda _: None, report=False).counters.items == 0
