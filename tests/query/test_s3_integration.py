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
