"""Queries read the output's tables and nothing else, and change nothing."""

from __future__ import annotations

import duckdb
import pytest

from pipeline.query import QueryError, RefusedStatement, connect, run_statement
from tests.query.outputs import at, item, local, write_run


@pytest.fixture
def con(tmp_path):
    out = tmp_path / "out"
    fs, root = local(out)
    write_run(fs, root, "r1", at(1), [item("a", ctc={"ref_words": 2}), item("b", error="empty")])
    (tmp_path / "secret.csv").write_text("password\nhunter2\n")
    return connect(root)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM transcripts",
        "FROM corpus_wer",
        "DESCRIBE transcripts",
        "SHOW TABLES",
        "SUMMARIZE errors",
        "WITH x AS (SELECT * FROM latest) SELECT item_id FROM x",
        "EXPLAIN SELECT * FROM errors_open",
        "EXPLAIN ANALYZE SELECT count(*) FROM transcripts",
        "-- a comment\nSELECT 1;",
    ],
)
def test_read_only_statements_run(con, sql):
    result, _ = run_statement(con, sql)
    assert result.num_rows >= 1


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("COPY (SELECT * FROM transcripts) TO 'x.csv'", "COPY statements are refused"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'", "COPY statements are refused"),
        ("ATTACH 'x.db'", "ATTACH statements are refused"),
        ("INSTALL httpfs", "LOAD statements are refused"),
        ("LOAD httpfs", "LOAD statements are refused"),
        ("SET enable_external_access=true", "SET statements are refused"),
        ("CREATE TABLE t AS SELECT 1", "CREATE statements are refused"),
        ("DROP VIEW transcripts", "DROP statements are refused"),
        ("PRAGMA show_tables", "PRAGMA statements are refused"),
        ("SELECT 1; DROP VIEW errors", "one statement at a time: found 2"),
        ("SELECT 1; SELECT 2", "one statement at a time"),
    ],
)
def test_other_statements_are_refused_with_the_reason(con, sql, why):
    with pytest.raises(RefusedStatement, match=why):
        run_statement(con, sql)
    assert con.sql("SELECT count(*) FROM errors").fetchall() == [(1,)]  # nothing changed


def test_files_outside_the_output_cannot_be_read(con, tmp_path):
    for sql in [
        f"SELECT * FROM read_csv('{tmp_path}/secret.csv')",
        f"SELECT * FROM read_csv('{tmp_path}/out/../secret.csv')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
    ]:
        with pytest.raises(QueryError, match="Permission Error"):
            run_statement(con, sql)


def test_the_connection_itself_cannot_be_reconfigured(con, tmp_path):
    """Even the Python API's raw connection: settings are locked, external access is off."""
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access=true")
    with pytest.raises(duckdb.Error):
        con.execute(f"ATTACH '{tmp_path}/x.db'")
    with pytest.raises(duckdb.Error):
        con.execute("INSTALL httpfs")


def test_a_syntax_error_shows_duckdbs_message_and_position(con):
    with pytest.raises(QueryError) as info:
        run_statement(con, "SELEC item_id FROM transcripts")
    assert "syntax error" in str(info.value) and "LINE 1" in str(info.value)
    with pytest.raises(QueryError, match="no SQL statement"):
        run_statement(con, "  ")
    with pytest.raises(QueryError, match="does not exist"):
        run_statement(con, "SELECT * FROM nosuchview")
