"""`audiobatch compact` on local disk: fewer files, and readers never see a duplicate or a gap."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.io.compact import CompactOptions, compact_output
from pipeline.io.compacted import Published, published
from pipeline.io.lease import acquire
from pipeline.io.tables import read_table, visible_files
from pipeline.query import connect
from tests.io.compaction import COUNTS, Reader, many_runs

FS = pafs.LocalFileSystem()
QUIET = dict(out=lambda line: None)


def _files(root, table="transcripts") -> list[str]:
    return sorted(p.rsplit("/", 1)[-1] for p in visible_files(FS, str(root), table))


def test_visible_skips_replaced_files_and_unpublished_compacted_ones():
    state = Published(
        0, frozenset({"task=a/-compacted-99999999-x-0000.parquet"}), {"task=a/w1.parquet": 1.0}
    )
    assert state.visible("task=a/w2.parquet")
    assert not state.visible("task=a/w1.parquet")
    assert state.visible("task=a/-compacted-99999999-x-0000.parquet")
    assert not state.visible("task=a/-compacted-99999998-y-0000.parquet")  # being written
    assert not Published().visible("task=a/-compacted-99999999-x-0000.parquet")


def test_compaction_merges_each_partition_and_readers_see_the_same_rows(tmp_path):
    expected = many_runs(FS, str(tmp_path), 30)
    before = connect(str(tmp_path)).sql(COUNTS).fetchall()
    results = compact_output(str(tmp_path), None, CompactOptions(), **QUIET)
    by_table = {r.table: r for r in results}
    assert (by_table["transcripts"].merged, by_table["transcripts"].written) == (60, 2)
    assert (by_table["errors"].merged, by_table["errors"].written) == (30, 1)
    assert before == expected == connect(str(tmp_path)).sql(COUNTS).fetchall()
    assert [f[:11] for f in _files(tmp_path)] == ["-compacted-"] * 2
    # The merged files carry the partition column and every declared column.
    merged = pq.read_table(visible_files(FS, str(tmp_path), "transcripts")[0])
    assert set(merged.column("task").to_pylist()) in ({"ctc"}, {"whisper"})
    assert read_table(FS, str(tmp_path), "errors").num_rows == 30
    # The replaced files are still there (a reader that listed earlier finds them) ...
    assert len(list((tmp_path / "transcripts" / "task=ctc").iterdir())) == 31


def test_replaced_files_are_deleted_by_a_later_compact_after_the_grace_period(tmp_path):
    expected = many_runs(FS, str(tmp_path), 6)
    compact_output(str(tmp_path), None, CompactOptions(grace_s=3600), **QUIET)
    again = compact_output(str(tmp_path), None, CompactOptions(grace_s=3600), **QUIET)
    assert (
        again[0].deleted == 0 and len(list((tmp_path / "transcripts" / "task=ctc").iterdir())) == 7
    )
    compact_output(str(tmp_path), None, CompactOptions(grace_s=0), **QUIET)
    assert len(list((tmp_path / "transcripts" / "task=ctc").iterdir())) == 1
    assert published(FS, str(tmp_path), "transcripts").replaced == {}
    assert connect(str(tmp_path)).sql(COUNTS).fetchall() == expected
    # Only the current manifest and the one before are kept.
    assert len(list((tmp_path / "_compaction" / "transcripts").iterdir())) == 2


def test_a_crashed_compactions_files_are_never_read_and_are_deleted_next_time(tmp_path):
    expected = many_runs(FS, str(tmp_path), 4)
    stray = tmp_path / "transcripts" / "task=ctc" / "-compacted-99999999-dead-0000.parquet"
    src = sorted((tmp_path / "transcripts" / "task=ctc").iterdir())[0]
    stray.write_bytes(src.read_bytes())  # merged rows written, manifest never published
    assert connect(str(tmp_path)).sql(COUNTS).fetchall() == expected
    assert len(read_table(FS, str(tmp_path), "transcripts")) == 2 * 16
    compact_output(str(tmp_path), None, CompactOptions(), **QUIET)
    assert not stray.exists()
    assert connect(str(tmp_path)).sql(COUNTS).fetchall() == expected


def test_new_files_after_compaction_are_read_and_compacted_next_time(tmp_path):
    many_runs(FS, str(tmp_path), 4)
    compact_output(str(tmp_path), None, CompactOptions(), **QUIET)
    from tests.query.outputs import at, item, write_run

    write_run(
        FS,
        str(tmp_path),
        "20261201T000000Z-new",
        at(5),
        [item("n1", ctc={}), item("n2", ctc={})],
        tasks=("ctc", "whisper"),
    )
    write_run(
        FS,
        str(tmp_path),
        "20261201T010000Z-new",
        at(6),
        [item("n3", ctc={})],
        tasks=("ctc", "whisper"),
    )
    want = [("ctc", 19, 19), ("whisper", 19, 19)]
    assert connect(str(tmp_path)).sql(COUNTS).fetchall() == want
    second = compact_output(str(tmp_path), None, CompactOptions(), **QUIET)
    assert second[0].merged == 6 and second[0].written == 2  # old merged file + 2 new, per task
    assert connect(str(tmp_path)).sql(COUNTS).fetchall() == want
    assert len(_files(tmp_path)) == 2


def test_target_size_splits_a_partition_into_several_files(tmp_path):
    expected = many_runs(FS, str(tmp_path), 12)
    size = (tmp_path / "transcripts" / "task=ctc").iterdir().__next__().stat().st_size
    compact_output(str(tmp_path), None, CompactOptions(target_bytes=4 * size + 1), **QUIET)
    merged = [f for f in _files(tmp_path) if f.startswith("-compacted-")]
    assert 6 <= len(merged) <= 8  # about 4 files' worth each: 3 per task, sizes vary a little
    assert connect(str(tmp_path)).sql(COUNTS).fetchall() == expected


def test_dry_run_changes_nothing(tmp_path, capsys):
    many_runs(FS, str(tmp_path), 3)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert main(["compact", str(tmp_path), "--dry-run", "--table", "transcripts"]) == 0
    assert "transcripts: 6 of 6 files into 2" in capsys.readouterr().out
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_compact_refuses_while_a_run_holds_the_lease(tmp_path, capsys):
    import fsspec

    many_runs(FS, str(tmp_path), 3)
    lease = acquire(fsspec.filesystem("file"), str(tmp_path), "20261130T000000Z-abc123", 60)
    try:
        assert main(["compact", str(tmp_path)]) == 3
    finally:
        lease.release()
    err = capsys.readouterr().err
    assert "in use by run 20261130T000000Z-abc123" in err
    assert not (tmp_path / "_compaction").exists()
    assert main(["compact", str(tmp_path)]) == 0


def test_completion_records_are_merged_keeping_every_column_by_name(tmp_path):
    from pipeline.io.completion import COMPLETION, COMPLETION_DIR

    for n, extra in enumerate([None, "night"]):
        row = {
            "item_id": f"i{n}",
            "task": "ctc",
            "outcome": "ok",
            "transient": False,
            "shard_level": False,
            "source_uri": "s",
            "input_hash": "h",
            "run_id": f"r{n}",
        }
        table = pa.Table.from_pylist([row], schema=COMPLETION)
        if extra:  # a newer writer's nullable column
            table = table.append_column("note", pa.array([extra], pa.string()))
        (tmp_path / COMPLETION_DIR).mkdir(exist_ok=True)
        (tmp_path / "_checkpoint").mkdir(exist_ok=True)
        pq.write_table(table, tmp_path / COMPLETION_DIR / f"w{n}.parquet")
        pq.write_table(table.select(["item_id"]), tmp_path / "_checkpoint" / f"w{n}.parquet")
    many_runs(FS, str(tmp_path), 1)
    compact_output(str(tmp_path), None, CompactOptions(), **QUIET)
    (merged,) = list((tmp_path / COMPLETION_DIR).iterdir())
    rows = sorted(pq.read_table(merged).to_pylist(), key=lambda r: r["item_id"])
    assert [(r["item_id"], r["note"]) for r in rows] == [("i0", None), ("i1", "night")]


@pytest.mark.parametrize("rounds", [3])
def test_a_reader_during_compaction_never_sees_a_duplicate_or_a_missing_row(tmp_path, rounds):
    expected = many_runs(FS, str(tmp_path), 120)
    reader = Reader(str(tmp_path), expected, errors=120)
    reader.start()
    reader.settle()
    generations = []
    for n in range(rounds):  # publish, then delete the replaced files (grace 0), then again
        if n == 1:  # past the grace period: only connections made since are guaranteed
            reader.retire_keep()
        compact_output(str(tmp_path), None, CompactOptions(grace_s=3600 if n == 0 else 0), **QUIET)
        generations.append(published(FS, str(tmp_path), "transcripts").generation)
        reader.settle()
    reader.finish()
    assert reader.failures == [], reader.failures[:2]
    assert reader.wrong == []
    assert reader.queries >= 8 and reader.kept_queries >= 2
    assert generations == [0, 1, 1]
    assert len(list((tmp_path / "transcripts" / "task=ctc").iterdir())) == 1
    manifest = json.loads((tmp_path / "_compaction" / "transcripts" / "00000001.json").read_text())
    assert manifest["replaced"] == {}
