"""Completion per item and task, and the retry policy, on real files in an output folder
laid out the way the sink and Ray's checkpoint leave it."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.compute as pc
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


def _records(n: int, prefix: str, run_id: str = "r1", *, old: bool = False, extra=None):
    """`n` completion records; `old`: without the source columns (written before them);
    `extra`: a newer writer's additional column, as (name, value)."""
    from pipeline.io.completion import COMPLETION

    rows = {
        "item_id": [f"{prefix}{i:06d}" for i in range(n)],
        "task": ["ctc" if i % 3 else "tags" for i in range(n)],
        "outcome": ["ok" if i % 7 else "read_failed" for i in range(n)],
        "transient": [not i % 7 for i in range(n)],
        "shard_level": [False] * n,
        "source_uri": [f"/in/{prefix}{i // 4}.wav" for i in range(n)],
        "input_hash": ["h1"] * n,
        "run_id": [run_id] * n,
        "source_size": [i for i in range(n)],
        "source_version": [str(10**9 + i) for i in range(n)],
    }
    schema = COMPLETION
    if old:
        schema = pa.schema(
            [f for f in COMPLETION if f.name not in ("source_size", "source_version")]
        )
    table = pa.table({k: rows[k] for k in schema.names}, schema=schema)
    if extra:
        table = table.append_column(extra[0], pa.array([extra[1]] * n, pa.string()))
    return table


def _commit_records(root, base: str, table: pa.Table, row_group_size: int | None = None):
    (root / COMPLETION_DIR).mkdir(parents=True, exist_ok=True)
    (root / "_checkpoint").mkdir(exist_ok=True)
    pq.write_table(table, root / COMPLETION_DIR / f"{base}.parquet", row_group_size=row_group_size)
    pq.write_table(table.select(["item_id"]), root / "_checkpoint" / f"{base}.parquet")


def _mixed_output(root) -> None:
    """Records over more than one piece (`_PIECE_ROWS`): a big file of several row groups,
    files of 32 records, older files without the source columns, a newer one with an extra
    column, and an uncommitted write."""
    _commit_records(root, "big", _records(70_000, "b"), row_group_size=25_000)
    for w in range(40):
        _commit_records(root, f"w{w:03d}", _records(32, f"w{w:03d}-", old=w % 4 == 0))
    _commit_records(root, "newer", _records(32, "n", "r2", extra=("note", "x")))
    _commit(root, "crashed", [{"id": "never"}], "r3", pending=True)


def _plain_rows(table: pa.Table) -> list[tuple]:
    """Every record as a tuple of the COMPLETION columns, sorted (dictionary columns decoded)."""
    from pipeline.io.completion import COMPLETION

    columns = []
    for name in COMPLETION.names:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns.append(column.to_pylist())
    return sorted(zip(*columns, strict=True), key=repr)


def test_records_read_file_by_file_equal_a_dataset_read_of_the_same_files(tmp_path):
    """The reader (file by file, in pieces) gives exactly the records a pyarrow dataset over
    the same committed files gives (the earlier reader), older files' source columns null,
    a newer file's extra column left out; an uncommitted write is not read."""
    import pyarrow.dataset as ds

    from pipeline.io.completion import COMPLETION, read_records

    _mixed_output(tmp_path)
    records = read_records(FS, str(tmp_path), "_checkpoint")
    assert len(records.files) == 42 and records.legacy.size == 0
    expected = ds.dataset(list(records.files), schema=COMPLETION, format="parquet").to_table()
    assert records.table.num_rows == expected.num_rows == 70_000 + 41 * 32
    assert records.table.column_names == COMPLETION.names
    assert records.table.column("task").num_chunks > 1, "more than one piece was read"
    assert _plain_rows(records.table) == _plain_rows(expected)
    old = records.table.filter(pc.starts_with(records.table.column("item_id"), "w000-"))
    assert old.column("source_size").null_count == 32


def _completion_files(root) -> list[str]:
    return sorted(p.name for p in (root / COMPLETION_DIR).iterdir())


def test_merging_streams_pieces_and_a_newer_column_starts_a_second_merged_file(tmp_path):
    """Merging over more than one piece keeps every record and every column by name: the
    newer file's extra column, past the first piece, goes to a second merged file (both
    committed); the small files and their checkpoints are gone, the crashed write stays."""
    from pipeline.io.completion import compact, read_records

    _mixed_output(tmp_path)
    before = read_records(FS, str(tmp_path), "_checkpoint")
    files = sorted(before.files)  # big (one piece), newer (the column, in the second), w...
    assert compact(FS, str(tmp_path), "_checkpoint", files, "r9") == 42
    assert _completion_files(tmp_path) == [
        "compacted-r9-1.parquet",
        "compacted-r9.parquet",
        "crashed.parquet",
    ]
    assert sorted(p.name for p in (tmp_path / "_checkpoint").iterdir()) == [
        "compacted-r9-1.parquet",
        "compacted-r9.parquet",
        "crashed.pending.parquet",
    ]
    after = read_records(FS, str(tmp_path), "_checkpoint")
    assert _plain_rows(after.table) == _plain_rows(before.table)
    second = pq.read_table(tmp_path / COMPLETION_DIR / "compacted-r9-1.parquet")
    assert second.column("note").to_pylist().count("x") == 32
    assert "note" not in pq.read_schema(tmp_path / COMPLETION_DIR / "compacted-r9.parquet").names


def test_a_merge_that_fails_midway_leaves_every_record_and_no_merged_file(tmp_path):
    """A file that cannot be read past the first piece (here: not Parquet) fails the merge
    after part of it was written: no merged file or temporary is left, nothing is deleted,
    and the records read as before."""
    from pipeline.io.completion import compact, read_records

    _mixed_output(tmp_path)
    files_before = _completion_files(tmp_path)
    before = read_records(FS, str(tmp_path), "_checkpoint")
    (tmp_path / COMPLETION_DIR / "zz-broken.parquet").write_bytes(b"not parquet")
    (tmp_path / "_checkpoint" / "zz-broken.parquet").write_bytes(b"")
    files = [*before.files, str(tmp_path / COMPLETION_DIR / "zz-broken.parquet")]
    with pytest.raises(pa.ArrowInvalid):
        compact(FS, str(tmp_path), "_checkpoint", files, "r9")
    assert _completion_files(tmp_path) == sorted([*files_before, "zz-broken.parquet"])
    assert not any(p.name.startswith("compacted") for p in (tmp_path / "_checkpoint").iterdir())
    (tmp_path / COMPLETION_DIR / "zz-broken.parquet").unlink()
    (tmp_path / "_checkpoint" / "zz-broken.parquet").unlink()
    after = read_records(FS, str(tmp_path), "_checkpoint")
    assert _plain_rows(after.table) == _plain_rows(before.table)


def test_a_crash_after_the_merged_file_before_the_deletions_counts_each_record_once(tmp_path):
    """The state a crash between committing the merged file and deleting the small ones
    leaves (both sets of records committed): what is done, retried and where is the same."""
    from pipeline.io.completion import compact, read_records, settle, source_state

    _mixed_output(tmp_path)
    saved = tmp_path.parent / "saved"
    shutil.copytree(tmp_path, saved)
    before = read_records(FS, str(tmp_path), "_checkpoint")
    compact(FS, str(tmp_path), "_checkpoint", before.files, "r9")
    for folder in (COMPLETION_DIR, "_checkpoint"):  # the small files back, as not yet deleted
        shutil.copytree(saved / folder, tmp_path / folder, dirs_exist_ok=True)
    both = read_records(FS, str(tmp_path), "_checkpoint")
    assert both.table.num_rows == 2 * before.table.num_rows
    tasks = ["ctc", "tags"]
    one, two = (settle(r, tasks, "h1", RetryPolicy()) for r in (before, both))
    assert {t: _ids(v) for t, v in one.done.items()} == {t: _ids(v) for t, v in two.done.items()}
    assert _ids(one.done_all) == _ids(two.done_all) and one.retried == two.retried > 0
    assert source_state(before).sort_by("source_uri") == source_state(both).sort_by("source_uri")


def test_a_runs_end_merge_takes_the_small_files_and_leaves_merged_ones(tmp_path):
    """`merge_small`: the committed small files (this run's and a dead run's) into one
    under a name of its own, even when this run's planner merged under the run's id; the
    merged files stay as they are; a second call finds nothing to merge."""
    from pipeline.io.completion import compact, merge_small, read_records

    for w in range(300):
        _commit_records(tmp_path, f"a{w:03d}", _records(4, f"a{w:03d}-", "r1"))
    planned = read_records(FS, str(tmp_path), "_checkpoint")
    compact(FS, str(tmp_path), "_checkpoint", planned.files, "r2")  # the planner, run r2
    for w in range(5):  # run r2's writes
        _commit_records(tmp_path, f"b{w}", _records(32, f"b{w}-", "r2"))
    _commit(tmp_path, "crashed", [{"id": "never"}], "r2", pending=True)
    before = read_records(FS, str(tmp_path), "_checkpoint")
    merged_before = (tmp_path / COMPLETION_DIR / "compacted-r2.parquet").read_bytes()
    assert merge_small(FS, str(tmp_path), "_checkpoint", "r2") == 5
    assert _completion_files(tmp_path) == [
        "compacted-r2-end.parquet",
        "compacted-r2.parquet",
        "crashed.parquet",
    ]
    assert (tmp_path / COMPLETION_DIR / "compacted-r2.parquet").read_bytes() == merged_before
    after = read_records(FS, str(tmp_path), "_checkpoint")
    assert _plain_rows(after.table) == _plain_rows(before.table)
    assert merge_small(FS, str(tmp_path), "_checkpoint", "r2") == 0
