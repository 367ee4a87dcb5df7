"""The views over a small real output written through the pipeline's sink functions."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from pipeline.query import QueryError, connect
from tests.query.outputs import at, item, local, write_run


@pytest.fixture
def output(tmp_path):
    """Three runs over one corpus: a re-processed item, an error fixed later, a read error that
    stays, one fixed by a later read, and a run whose driver died before its `runs` row."""
    fs, root = local(tmp_path)
    write_run(
        fs,
        root,
        "20261130T010000Z-aaaaaa",
        at(1),
        [
            item("a", ctc={"ref_words": 4, "substitutions": 2}, whisper="model_failed"),
            item("b", shard="s2", ctc={"ref_words": 3, "deletions": 1}, whisper={"ref_words": 3}),
            item("c", ctc="model_failed", whisper={"ref_words": 2, "insertions": 2}),
            item("d", error="truncated"),
            item("e", error="read_failed"),
        ],
        tasks=("ctc", "whisper"),
    )
    write_run(
        fs,
        root,
        "20261130T020000Z-bbbbbb",
        at(2),
        [
            item("a", ctc={"ref_words": 4, "substitutions": 1}),  # re-processed: newer row wins
            item("c", ctc={"ref_words": 2}),  # fixes c's ctc error
            item("d", error="truncated"),  # still broken: a second open error row
        ],
    )
    # No `runs` row (a killed driver): placed by the time in its id, after the others.
    write_run(fs, root, "20261130T030000Z-cccccc", None, [item("e", ctc={"ref_words": 1})])
    return root


def rows(con, sql: str) -> list[tuple]:
    return con.sql(sql).fetchall()


def test_table_views_carry_their_partition_column(output):
    con = connect(output)
    assert rows(con, "SELECT task, count(*) FROM transcripts GROUP BY task ORDER BY task") == [
        ("ctc", 5),
        ("whisper", 2),
    ]
    assert rows(con, "SELECT DISTINCT stage FROM errors ORDER BY stage") == [
        ("ctc",),
        ("decode",),
        ("whisper",),
    ]
    assert rows(con, "SELECT DISTINCT job FROM runs") == [("demo",)]


def test_latest_keeps_the_newest_row_per_item_and_task(output):
    con = connect(output)
    got = rows(con, "SELECT item_id, task, run_id FROM latest ORDER BY task, item_id")
    assert got == [
        ("a", "ctc", "20261130T020000Z-bbbbbb"),
        ("b", "ctc", "20261130T010000Z-aaaaaa"),
        ("c", "ctc", "20261130T020000Z-bbbbbb"),
        ("e", "ctc", "20261130T030000Z-cccccc"),
        ("b", "whisper", "20261130T010000Z-aaaaaa"),
        ("c", "whisper", "20261130T010000Z-aaaaaa"),
    ]


def test_corpus_wer_is_total_edits_over_total_words_of_the_latest_rows(output):
    con = connect(output)
    got = con.sql("FROM corpus_wer ORDER BY task").fetchdf().to_dict("records")
    ctc, whisper = got
    # a (1 edit / 4, its newer row), b (1 / 3), c (0 / 2), e (0 / 1): 2 / 10
    assert (ctc["items"], ctc["ref_words"], ctc["edits"], ctc["wer"]) == (4, 10, 2, 0.2)
    assert (whisper["items"], whisper["edits"], whisper["wer"]) == (2, 2, 2 / 5)
    assert ctc["normalizer"] == "basic" and ctc["audio_s"] == 8.0
    by_shard = rows(con, "SELECT shard, wer FROM corpus_wer_by_shard WHERE task='ctc' ORDER BY 1")
    assert by_shard == [("s1", 1 / 7), ("s2", 1 / 3)]


def test_errors_open_drops_errors_a_later_run_fixed(output):
    con = connect(output)
    got = rows(con, "SELECT item_id, task, error_code, run_id FROM errors_open ORDER BY ALL")
    assert got == [
        ("a", "whisper", "model_failed", "20261130T010000Z-aaaaaa"),  # never retried
        ("d", None, "truncated", "20261130T010000Z-aaaaaa"),  # one open row per failed run
        ("d", None, "truncated", "20261130T020000Z-bbbbbb"),
    ]  # c/ctc: fixed by run 2; e: read by the killed run 3, which placed by its id is later
    assert rows(con, "SELECT count(*) FROM errors") == [(5,)]


def test_errors_open_keeps_an_error_written_after_the_success(tmp_path):
    fs, root = local(tmp_path)
    write_run(fs, root, "r-old", at(1), [item("a", ctc={"ref_words": 1})])
    write_run(fs, root, "r-new", at(2), [item("a", ctc="model_failed")])
    con = connect(root)
    assert rows(con, "SELECT item_id, run_id FROM errors_open") == [("a", "r-new")]
    assert rows(con, "SELECT run_id FROM latest") == [("r-old",)]


def test_errors_open_closes_a_whole_shard_error_once_its_items_are_read_later(tmp_path):
    fs, root = local(tmp_path)
    shard = "/c/train.parquet"
    # Run 1: the spec named the wrong audio column: one error row for the whole shard.
    write_run(fs, root, "r1", at(1), [item("sh", error="config_error", source=shard)])
    other = "/c/other.parquet"  # another shard's whole-shard error, never fixed
    write_run(fs, root, "r1b", at(1), [item("sh2", error="shard_corrupt", source=other)], part=1)
    con = connect(root)
    assert rows(con, "SELECT item_id FROM errors_open ORDER BY 1") == [("sh",), ("sh2",)]
    # Run 2, spec fixed: the shard's items are read, one of them fails on its own.
    fixed = [item(f"i{n}", source=shard, member=f"row={n}", ctc={"ref_words": 1}) for n in (0, 1)]
    fixed.append(item("i2", error="truncated", source=shard, member="row=2"))
    write_run(fs, root, "r2", at(2), fixed)
    con = connect(root)
    assert rows(con, "SELECT item_id, error_code FROM errors_open ORDER BY 1") == [
        ("i2", "truncated"),
        ("sh2", "shard_corrupt"),
    ]
    # Each input once: 2 transcripts + 1 open error for the shard's 3 items.
    assert rows(con, f"SELECT count(*) FROM errors_open WHERE source_uri = '{shard}'") == [(1,)]


def test_a_table_without_files_is_an_empty_view_with_its_schema(tmp_path):
    fs, root = local(tmp_path)
    write_run(fs, root, "r1", at(1), [item("a", ctc={"ref_words": 1})])  # a clean run: no errors
    con = connect(root)
    assert rows(con, "SELECT count(*) FROM errors_open") == [(0,)]
    assert rows(con, "SELECT count(*) FROM classifications") == [(0,)]
    described = dict(rows(con, "SELECT column_name, column_type FROM (DESCRIBE errors)"))
    assert described["error_code"] == "VARCHAR" and described["stage"] == "VARCHAR"
    assert list(described) == [
        "item_id", "source_uri", "member", "shard", "task", "error_code", "error_message",
        "run_id", "metadata", "stage",
    ]  # fmt: skip
    runs = dict(rows(con, "SELECT column_name, column_type FROM (DESCRIBE runs)"))
    assert runs["started_at"] == "TIMESTAMP WITH TIME ZONE"


def test_views_read_files_written_after_connect(output, tmp_path):
    con = connect(output)
    before = rows(con, "SELECT count(*) FROM transcripts")[0][0]
    fs, root = local(tmp_path)
    write_run(fs, root, "20261130T040000Z-dddddd", at(4), [item("z", ctc={"ref_words": 1})])
    assert rows(con, "SELECT count(*) FROM transcripts")[0][0] == before + 1


def test_an_output_without_tables_says_so(tmp_path):
    (tmp_path / "not-an-output").mkdir()
    (tmp_path / "not-an-output" / "notes.txt").write_text("hi")
    with pytest.raises(QueryError, match="holds no audiobatch tables"):
        connect(str(tmp_path / "not-an-output"))
    with pytest.raises(QueryError, match="no such output folder"):
        connect(str(tmp_path / "missing"))


def test_every_file_carries_its_partition_value(output):
    """Hive-unaware readers see the task too: pyarrow on one file, DuckDB without hive."""
    import glob

    import duckdb

    files = sorted(glob.glob(f"{output}/transcripts/task=whisper/*.parquet"))
    assert set(pq.read_table(files[0]).column("task").to_pylist()) == {"whisper"}
    plain = duckdb.sql(
        f"SELECT task, count(*) FROM read_parquet('{output}/transcripts/*/*.parquet', "
        "hive_partitioning=false) GROUP BY task ORDER BY task"
    ).fetchall()
    assert plain == [("ctc", 5), ("whisper", 2)]
    errors = pq.read_table(glob.glob(f"{output}/errors/stage=decode/*.parquet")[0])
    assert set(errors.column("stage").to_pylist()) == {"decode"}
    runs = pq.read_table(glob.glob(f"{output}/runs/job=demo/*.parquet")[0])
    assert runs.column("job").to_pylist() == ["demo"]


def test_datasets_load_dataset_sees_the_task(output):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(
        "parquet", data_files=f"{output}/transcripts/**/*.parquet", split="train"
    )
    assert sorted(set(ds["task"])) == ["ctc", "whisper"] and ds.num_rows == 7


def test_files_written_before_the_partition_column_existed_still_read(output):
    """Outputs written before every file carried its partition column mix with new files."""
    import glob

    old = sorted(glob.glob(f"{output}/transcripts/task=ctc/*.parquet"))[0]
    table = pq.read_table(old)
    pq.write_table(table.drop_columns(["task"]), old)
    con = connect(output)
    assert rows(con, "SELECT count(*) FROM transcripts WHERE task = 'ctc'") == [(5,)]
    assert rows(con, "SELECT count(*) FROM latest WHERE task IS NULL") == [(0,)]
