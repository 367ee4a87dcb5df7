"""Completion per item and task, and the retry policy, on real files in an output folder
laid out the way the sink and Ray's checkpoint leave it."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from pipeline import columns as C
from pipeline.io.completion import (
    COMPLETION_DIR,
    RetryPolicy,
    completion_rows,
    is_transient,
    load_completion,
    mark_done,
)
from pipeline.io.idset import IdSet
from pipeline.io.tables import TaskInfo, split_batch

FS = pafs.LocalFileSystem()
TASKS = ["ctc", "tags"]


def _batch(rows: list[dict]) -> pa.Table:
    """Finished rows: item columns, row-level errors, per-task errors and done flags."""
    cols = {c: [] for c in (C.ITEM_ID, C.SOURCE_URI, C.MEMBER, *C.ERROR_COLUMNS)}
    for t in TASKS:
        for c in (*C.ERROR_COLUMNS, C.TASK_DONE):
            cols[C.task_column(t, c)] = []
    for r in rows:
        cols[C.ITEM_ID].append(r["id"])
        cols[C.SOURCE_URI].append(r.get("source", f"/in/{r['id']}.wav"))
        cols[C.MEMBER].append(r.get("member", ""))
        for c, v in zip(C.ERROR_COLUMNS, ("read", r.get("code"), r.get("msg", "m")), strict=True):
            cols[c].append(v if r.get("code") else None)
        for t in TASKS:
            code = r.get(f"{t}_code")
            cols[C.task_column(t, C.ERROR_STAGE)].append(t if code else None)
            cols[C.task_column(t, C.ERROR_CODE)].append(code)
            cols[C.task_column(t, C.ERROR_MESSAGE)].append(r.get(f"{t}_msg", "m") if code else None)
            cols[C.task_column(t, C.TASK_DONE)].append(t in r.get("done", ()))
    types = {C.task_column(t, C.TASK_DONE): pa.bool_() for t in TASKS}
    return pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in cols.items()})


def _commit(root, base: str, rows: list[dict], run_id: str, input_hash="h1", pending=False):
    """What one sink write leaves: its completion file and Ray's checkpoint file."""
    batch = _batch(rows)
    records = completion_rows(batch, TASKS, run_id, input_hash)
    (root / COMPLETION_DIR).mkdir(parents=True, exist_ok=True)
    (root / "_checkpoint").mkdir(exist_ok=True)
    pq.write_table(records, root / COMPLETION_DIR / f"{base}.parquet")
    suffix = ".pending.parquet" if pending else ".parquet"
    pq.write_table(batch.select([C.ITEM_ID]), root / "_checkpoint" / f"{base}{suffix}")


def _load(root, policy: RetryPolicy | None = None, input_hash="h1"):
    return load_completion(FS, str(root), "_checkpoint", TASKS, input_hash, policy or RetryPolicy())


def _ids(idset: IdSet) -> set[str]:
    return {x.decode() for x in idset.ids}


def test_a_new_task_is_pending_for_items_the_old_tasks_finished(tmp_path):
    rows = [{"id": "a"}, {"id": "b"}]
    batch = _batch(rows)
    records = completion_rows(
        batch.drop_columns([c for c in batch.column_names if "tags" in c]), ["ctc"], "r1", "h1"
    )
    (tmp_path / COMPLETION_DIR).mkdir()
    (tmp_path / "_checkpoint").mkdir()
    pq.write_table(records, tmp_path / COMPLETION_DIR / "w1.parquet")
    pq.write_table(batch.select([C.ITEM_ID]), tmp_path / "_checkpoint" / "w1.parquet")
    done = _load(tmp_path)
    assert _ids(done.done["ctc"]) == {"a", "b"} and _ids(done.done["tags"]) == set()
    assert len(done.done_all) == 0, "both items must be read again, for `tags` only"
    marked = mark_done(pa.table({C.ITEM_ID: ["a", "c"]}), done.done)
    assert marked.column("ctc__done").to_pylist() == [True, False]
    assert marked.column("tags__done").to_pylist() == [False, False]


def test_uncommitted_writes_do_not_count_and_legacy_checkpoints_do(tmp_path):
    _commit(tmp_path, "w1", [{"id": "a"}], "r1")
    _commit(tmp_path, "w2", [{"id": "b"}], "r1", pending=True)  # crashed before its commit
    pq.write_table(pa.table({C.ITEM_ID: ["old"]}), tmp_path / "_checkpoint" / "w0.parquet")
    done = _load(tmp_path)
    assert _ids(done.done_all) == {"a", "old"} and done.legacy == 1


def test_transient_errors_are_retried_and_permanent_ones_only_when_asked(tmp_path):
    _commit(
        tmp_path,
        "w1",
        [
            {"id": "ok"},
            {"id": "net", "code": "read_failed"},
            {"id": "bad", "code": "undecodable"},
            {"id": "oom", "ctc_code": "model_failed", "ctc_msg": "torch.OutOfMemoryError: CUDA"},
            {"id": "nan", "ctc_code": "model_failed", "ctc_msg": "ValueError: nan logits"},
        ],
        "r1",
    )
    done = _load(tmp_path)
    assert _ids(done.done["ctc"]) == {"ok", "bad", "nan"}
    assert _ids(done.done["tags"]) == {"ok", "bad", "oom", "nan"}
    assert done.retried == 3  # net for both tasks, oom for ctc
    only = _load(tmp_path, RetryPolicy(codes=frozenset({"undecodable"})))
    assert _ids(only.done["ctc"]) == {"ok", "nan"}
    everything = _load(tmp_path, RetryPolicy(all=True))
    assert _ids(everything.done["ctc"]) == {"ok"}


def test_the_latest_outcome_wins(tmp_path):
    _commit(tmp_path, "w1", [{"id": "x", "code": "read_failed"}], "20261201T020000Z-aaaaaa")
    _commit(tmp_path, "w2", [{"id": "x"}], "20261202T020000Z-bbbbbb")
    assert _ids(_load(tmp_path).done_all) == {"x"}, "retried success supersedes the error"
    _commit(tmp_path, "w3", [{"id": "x", "code": "read_failed"}], "20261203T020000Z-cccccc")
    assert _ids(_load(tmp_path).done_all) == set()


def test_a_shard_that_failed_whole_is_retried_once_the_input_spec_changes(tmp_path):
    shard = {"id": "s", "member": "", "code": "shard_corrupt", "source": "/in/a.parquet"}
    _commit(tmp_path, "w1", [shard], "r1", input_hash="h1")
    assert _ids(_load(tmp_path, input_hash="h1").done_all) == {"s"}
    assert _ids(_load(tmp_path, input_hash="h2").done_all) == set()


def test_no_records_for_tasks_already_done(tmp_path):
    batch = _batch([{"id": "a", "done": ("ctc",)}, {"id": "b", "code": "empty", "done": ("ctc",)}])
    records = completion_rows(batch, TASKS, "r2", "h1")
    assert sorted(
        zip(records["item_id"].to_pylist(), records["task"].to_pylist(), strict=True)
    ) == [
        ("a", "tags"),
        ("b", "tags"),
    ]
    assert records["outcome"].to_pylist() == ["ok", "empty"] or records["outcome"].to_pylist() == [
        "empty",
        "ok",
    ]


@pytest.mark.parametrize(
    ("code", "message", "transient"),
    [
        ("read_failed", "timeout", True),
        ("write_failed", "503", True),
        ("model_failed", "torch.OutOfMemoryError: CUDA out of memory", True),
        ("model_failed", "RuntimeError: shapes", False),
        ("truncated", "half", False),
    ],
)
def test_transient_classification(code, message, transient):
    assert is_transient(code, message) is transient


def test_split_batch_writes_only_pending_tasks():
    """An item re-read for a new task gets that task's row and no second row for the old one;
    a decode failure then is an error of the new task only (not a null-task row)."""
    batch = _batch([{"id": "a", "done": ("ctc",)}, {"id": "b", "code": "empty", "done": ("ctc",)}])
    extra = {
        C.SHARD: ["."] * 2,
        "tags__labels": pa.array([[{"label": "dog", "score": 0.9}], None]),
        "tags__model": ["m", None],
        C.DURATION_S: [1.0, None],
        C.METADATA: [None, None],
        "ctc__text": [None, None],
    }
    for name, values in extra.items():
        batch = batch.append_column(name, pa.array(values) if isinstance(values, list) else values)
    tasks = [
        TaskInfo("ctc", "ctc", "m"),
        TaskInfo("tags", "classify", "m", table="classifications"),
    ]
    parts = split_batch(batch, tasks, "r2")
    assert ("transcripts", "ctc") not in parts
    assert parts[("classifications", "tags")].column("item_id").to_pylist() == ["a"]
    errors = parts[("errors", "read")]
    assert errors.column("item_id").to_pylist() == ["b"]
    assert errors.column("task").to_pylist() == ["tags"]


def test_compaction_keeps_every_outcome_and_leaves_one_file(tmp_path):
    from pipeline.io.completion import compact

    _commit(tmp_path, "w1", [{"id": "a"}, {"id": "b", "code": "read_failed"}], "r1")
    _commit(tmp_path, "w2", [{"id": "c"}], "r1")
    _commit(tmp_path, "w3", [{"id": "d"}], "r1", pending=True)  # a crashed write: not merged
    before = _load(tmp_path)
    assert compact(FS, str(tmp_path), "_checkpoint", before.files, "r2") == 2
    after = _load(tmp_path)
    assert {k: _ids(v) for k, v in after.done.items()} == {
        k: _ids(v) for k, v in before.done.items()
    }
    assert after.retried == before.retried == 2 and after.legacy == 0
    assert sorted(p.name for p in (tmp_path / COMPLETION_DIR).iterdir()) == [
        "compacted-r2.parquet",
        "w3.parquet",
    ]
    assert (tmp_path / "_checkpoint" / "w3.pending.parquet").exists()
