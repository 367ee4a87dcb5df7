"""A growing corpus over nights on one output: a task added to the spec runs over the old
items only for itself, a fixed broken file is retried when asked, and every item is
exactly once per task in that task's table or in `errors`."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipeline.io.completion import CHECKPOINT_DIR, RetryPolicy, committed_records
from pipeline.io.tables import read_table
from pipeline.runner import run_job
from pipeline.spec import parse_spec
from pipeline.testing.corpus import build_files_corpus, build_webdataset_corpus
from pipeline.testing.tiny_ctc import build_tiny_ctc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_ctc(str(tmp_path_factory.mktemp("models") / "w2v"), arch="wav2vec2", seed=3)


def _spec(corpus: Path, out: Path, model: str, tasks: list[str], **input_extra):
    return parse_spec(
        {
            "name": "nightly",
            "input": {"uri": str(corpus), **input_extra},
            "tasks": [
                {
                    "kind": "ctc",
                    "name": t,
                    "model": model,
                    "batch_size": 8,
                    "chunk_length_s": 4,
                    "num_cpus": 0.5,
                }
                for t in tasks
            ],
            "output": {"uri": str(out)},
            "runtime": {"read_batch_items": 4, "decode_batch_size": 4, "progress_interval_s": 60},
        }
    )


def _outcomes(out: Path, tasks: list[str]) -> dict[str, collections.Counter]:
    """task -> how many times each item appears for it (its table rows + its errors).

    A null-task error was written when every task then in the spec was pending: on the
    first night, only `ctc`; later nights name the task an error is for."""
    fs = pafs.LocalFileSystem()
    rows = read_table(fs, str(out), "transcripts")
    errors = read_table(fs, str(out), "errors")
    seen = {t: collections.Counter() for t in tasks}
    for r in rows.select(["item_id", "task"]).to_pylist() if rows is not None else []:
        seen[r["task"]][r["item_id"]] += 1
    for e in errors.select(["item_id", "task"]).to_pylist() if errors is not None else []:
        seen[e["task"] or "ctc"][e["item_id"]] += 1
    return seen


def _ran(result) -> int:
    return result.counters.items


def test_new_task_runs_over_old_items_only_for_itself(ray_address, tmp_path, tiny_model):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = build_files_corpus(str(corpus), n_items=10, seed=5, broken=True, manifest="jsonl")
    extra = {"manifest": str(corpus / "manifest.jsonl")}
    first = run_job(_spec(corpus, out, tiny_model, ["ctc"], **extra), out=lambda _: None)
    assert _ran(first) == len(items)
    merged = committed_records(pafs.LocalFileSystem(), str(out), CHECKPOINT_DIR)
    assert [Path(f).name for f in merged] == [f"compacted-{first.run_id}-end.parquet"], (
        "the run merged its writes' completion files into one at its end"
    )
    before = read_table(pafs.LocalFileSystem(), str(out), "transcripts").num_rows

    lines = []
    two = _spec(corpus, out, tiny_model, ["ctc", "ctc_b"], **extra)
    second = run_job(two, out=lines.append)
    assert _ran(second) == len(items), "every old item is read once more, for ctc_b"
    assert "done for some tasks only: ctc" in lines[0]
    seen = _outcomes(out, ["ctc", "ctc_b"])
    for task in ("ctc", "ctc_b"):
        assert sorted(seen[task].values()) == [1] * len(items), f"{task}: each item once"
    rows = read_table(pafs.LocalFileSystem(), str(out), "transcripts")
    assert sum(1 for t in rows.column("task").to_pylist() if t == "ctc") == before
    night = [
        r
        for r in read_table(pafs.LocalFileSystem(), str(out), "runs").to_pylist()
        if r["run_id"] == second.run_id
    ][0]
    assert {t["task"] for t in night["tasks"]} == {"ctc", "ctc_b"}
    assert [t["ok"] + t["failed"] for t in night["tasks"] if t["task"] == "ctc"] == [0]

    third = run_job(two, out=lambda _: None)
    assert _ran(third) == 0, "nothing left for either task"


def test_fixed_file_is_retried_only_when_asked(ray_address, tmp_path, tiny_model):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = build_files_corpus(str(corpus), n_items=6, seed=6, broken=True, manifest=None)
    broken = [it for it in items if it.expected in ("empty", "undecodable", "truncated")]
    good = next(it for it in items if it.expected == "ok")
    spec = _spec(corpus, out, tiny_model, ["ctc"])
    run_job(spec, out=lambda _: None)
    for it in broken:  # fixed overnight: the same path now holds good audio
        shutil.copy(corpus / good.path, corpus / it.path)
    assert _ran(run_job(spec, out=lambda _: None)) == 0, "permanent errors wait for a request"
    codes = sorted({it.expected for it in broken})
    retried = run_job(spec, out=lambda _: None, retry=RetryPolicy(codes=frozenset(codes)))
    assert _ran(retried) == len(broken)
    rows = read_table(pafs.LocalFileSystem(), str(out), "transcripts")
    assert (
        len(set(rows.column("item_id").to_pylist()))
        == rows.num_rows
        == len([it for it in items if it.expected == "ok"]) + len(broken)
    )


def test_webdataset_new_task_and_nothing_left(ray_address, tmp_path, tiny_model):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = build_webdataset_corpus(str(corpus), n_shards=2, items_per_shard=4, seed=7)
    run_job(_spec(corpus, out, tiny_model, ["ctc"]), out=lambda _: None)
    both = _spec(corpus, out, tiny_model, ["ctc", "ctc_b"])
    assert _ran(run_job(both, out=lambda _: None)) == len(items)
    seen = _outcomes(out, ["ctc", "ctc_b"])
    assert all(sorted(seen[t].values()) == [1] * len(items) for t in seen)
    assert _ran(run_job(both, out=lambda _: None)) == 0


def test_every_row_records_its_model_revision_and_a_changed_model_is_refused(
    ray_address, tmp_path, tiny_model
):
    """Issue 12 item 2: each row carries the model's resolved revision (here a folder's
    content hash); the model changing under the task's name is refused before anything
    runs; files written before the column existed still read, as nulls."""
    import json

    import pyarrow.parquet as pq

    from pipeline.errors import SpecError
    from pipeline.models.revision import folder_revision
    from pipeline.query import connect

    corpus, out, model = tmp_path / "corpus", tmp_path / "out", tmp_path / "model"
    shutil.copytree(tiny_model, model)
    items = build_files_corpus(str(corpus), n_items=6, seed=9)
    spec = _spec(corpus, out, str(model), ["ctc"])
    run_job(spec, out=lambda _: None, report=False)
    revision = folder_revision(model)
    rows = read_table(pafs.LocalFileSystem(), str(out), "transcripts")
    assert rows.num_rows == len(items)
    assert set(rows.column("model_revision").to_pylist()) == {revision}
    record = json.loads((out / "_tasks" / "ctc.json").read_text())
    assert record["model_revision"] == revision

    (model / "added_tokens.json").write_text("{}")  # the folder is not the same model now
    with pytest.raises(SpecError, match="model_revision: "):
        run_job(spec, out=lambda _: None, report=False)

    # As an output written before revisions were recorded: a file without the column and
    # a task record without a revision. The views read it, its rows as nulls.
    first = sorted((out / "transcripts").rglob("*.parquet"))[0]
    old = pq.read_table(first)
    pq.write_table(old.drop_columns(["model_revision"]), first)
    del record["model_revision"]
    (out / "_tasks" / "ctc.json").write_text(json.dumps(record))
    con = connect(str(out))
    got = con.sql("SELECT count(*), count(model_revision) FROM transcripts").fetchall()[0]
    assert got == (len(items), len(items) - old.num_rows)
