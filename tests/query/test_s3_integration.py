"""Queries over an output on object storage (the moto S3 emulator), through the fsspec
filesystem registered with DuckDB, confined to the output's prefix."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.io.storage import arrow_filesystem
from pipeline.query import QueryError, connect, run_statement
from pipeline.spec import StorageOptions
from tests.query.outputs import at, item, write_run

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_output(s3_bucket):
    endpoint, bucket = s3_bucket
    storage = StorageOptions(endpoint_url=endpoint)
    fs, root = arrow_filesystem(f"s3://{bucket}/out", storage)
    write_run(
        fs,
        root,
        "r1",
        at(1),
        [item("a", ctc={"ref_words": 2, "substitutions": 1}), item("b", error="empty")],
    )
    write_run(fs, root, "r2", at(2), [item("b", ctc={"ref_words": 2})])
    # A neighbour prefix in the same bucket, and one sharing the output's name as a prefix.
    for key in ("other/secret.parquet", "out-old/secret.parquet"):
        pq.write_table(pa.table({"secret": ["hunter2"]}), f"{bucket}/{key}", filesystem=fs)
    return f"s3://{bucket}/out", storage


def test_views_over_object_storage(s3_output):
    uri, storage = s3_output
    con = connect(uri, storage)
    assert con.sql("SELECT task, items, edits, wer FROM corpus_wer").fetchall() == [
        ("ctc", 2, 1, 0.25)
    ]
    assert con.sql("SELECT count(*) FROM errors_open").fetchall() == [(0,)]  # b was read later
    assert con.sql("SELECT count(*) FROM classifications").fetchall() == [(0,)]  # no files


def test_object_storage_is_confined_to_the_output_prefix(s3_output, tmp_path):
    uri, storage = s3_output
    bucket = uri.removeprefix("s3://").split("/")[0]
    con = connect(uri, storage)
    (tmp_path / "local.csv").write_text("x\n1\n")
    for sql in [
        f"SELECT * FROM read_parquet('s3://{bucket}/other/secret.parquet')",
        f"SELECT * FROM read_parquet('s3://{bucket}/out-old/secret.parquet')",
        f"SELECT * FROM read_parquet('s3://{bucket}/out/../other/secret.parquet')",
        f"SELECT * FROM glob('s3://{bucket}/**')",
        f"SELECT * FROM read_csv('{tmp_path}/local.csv')",
    ]:
        with pytest.raises(QueryError, match="Permission Error"):
            run_statement(con, sql)


def test_cli_with_an_endpoint(s3_output, capsys):
    uri, storage = s3_output
    code = main(
        [
            "query",
            uri,
            "SELECT item_id FROM latest ORDER BY 1",
            "--format",
            "csv",
            "--endpoint-url",
            storage.endpoint_url,
        ]
    )
    assert code == 0 and capsys.readouterr().out.splitlines() == ['"item_id"', '"a"', '"b"']


def test_reader_filesystem_answers_from_its_listing_within_the_ttl(s3_bucket, monkeypatch):
    """DuckDB asks a file's details ~8 times per query and globs each view's files at every
    bind: the reader answers both from its own listing (no request) until `LISTING_TTL_S`."""
    import time

    import pipeline.query.connection as connection
    from pipeline.io.storage import filesystem

    endpoint, bucket = s3_bucket
    storage = StorageOptions(endpoint_url=endpoint)
    writer, _ = arrow_filesystem(f"s3://{bucket}/ttl", storage)
    folder = f"{bucket}/ttl/task=x"
    for name in ("a", "b"):
        pq.write_table(pa.table({"x": [1]}), f"{folder}/{name}.parquet", filesystem=writer)
    monkeypatch.setattr(connection, "LISTING_TTL_S", 5)
    reader = connection.reader_filesystem(filesystem(f"s3://{bucket}/ttl", storage)[0])
    pattern = f"s3://{bucket}/ttl/**/*.parquet"  # as the views glob a table
    first = reader.glob(pattern)
    listed_at = time.monotonic()
    size = reader.size(first[0])
    writer.delete_file(f"{folder}/a.parquet")
    pq.write_table(pa.table({"x": [1]}), f"{folder}/c.parquet", filesystem=writer)
    # Within the TTL: the listing answers, though the store has changed.
    assert reader.glob(pattern) == first == [f"{folder}/a.parquet", f"{folder}/b.parquet"]
    assert reader.info(first[0])["size"] == size and reader.modified(first[0])
    assert time.monotonic() - listed_at < 5  # else the asserts above proved nothing
    # A file the listing lacks is asked of the store, not reported missing.
    assert reader.info(f"{folder}/c.parquet")["type"] == "file"
    time.sleep(max(0.0, 5.1 - (time.monotonic() - listed_at)))
    assert reader.glob(pattern) == [f"{folder}/b.parquet", f"{folder}/c.parquet"]
