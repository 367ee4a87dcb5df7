"""`audiobatch query` end to end through the CLI entry point, and the interactive prompt."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.query import connect
from pipeline.query.shell import shell
from tests.query.outputs import at, item, local, write_run


@pytest.fixture
def output(tmp_path):
    fs, root = local(tmp_path / "out")
    write_run(
        fs,
        root,
        "r1",
        at(1),
        [
            item("a", ctc={"ref_words": 4, "substitutions": 1, "text": "x|y"}),
            item("b", shard="s2", ctc={"ref_words": 2}),
            item("c", error="empty"),
        ],
    )
    return root


SQL = "SELECT item_id, shard, text, words FROM transcripts ORDER BY item_id"


def query(capsys, *args) -> tuple[int, str, str]:
    code = main(["query", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_formats(output, capsys, tmp_path):
    code, out, _ = query(capsys, output, SQL, "--format", "csv")
    assert code == 0
    got = list(csv.DictReader(io.StringIO(out)))
    assert [r["item_id"] for r in got] == ["a", "b"] and got[0]["text"] == "x|y"
    _, out, _ = query(capsys, output, SQL, "--format", "json")
    assert [r["shard"] for r in json.loads(out)] == ["s1", "s2"]
    _, out, _ = query(capsys, output, SQL, "--format", "jsonl")
    assert [json.loads(line)["item_id"] for line in out.splitlines()] == ["a", "b"]
    _, out, _ = query(capsys, output, SQL, "--format", "markdown")
    lines = out.splitlines()
    assert lines[0].startswith("| item_id ") and lines[1].startswith("|---")
    assert "x\\|y" in lines[2] and lines[-1] == "(2 rows)"
    _, out, _ = query(capsys, output, "FROM corpus_wer")
    header, rule, row = out.splitlines()[:3]
    assert header.split()[:3] == ["task", "items", "scored_items"] and set(rule) <= {"-", " "}
    assert row.split()[:3] == ["ctc", "2", "2"]
    target = tmp_path / "r.parquet"
    assert query(capsys, output, SQL, "--format", "parquet", "--out", str(target))[0] == 0
    assert pq.read_table(target).column("item_id").to_pylist() == ["a", "b"]


def test_limit_cuts_and_says_so(output, capsys):
    _, out, _ = query(capsys, output, SQL, "--limit", "1")
    assert out.splitlines()[-1].startswith("(1 row shown; more were cut")
    _, out, _ = query(capsys, output, SQL, "--limit", "1", "--format", "jsonl")
    assert len(out.splitlines()) == 1


def test_bad_input_exits_2_with_a_clear_message(output, capsys, tmp_path):
    code, _, err = query(capsys, output, "COPY (SELECT 1) TO '/tmp/x.csv'")
    assert code == 2 and "COPY statements are refused" in err
    code, _, err = query(capsys, output, "SELECT * FROM transcripts WHERE")
    assert code == 2 and "syntax error" in err
    code, _, err = query(capsys, str(tmp_path), "SELECT 1")
    assert code == 2 and "holds no audiobatch tables" in err
    code, _, err = query(capsys, output, "SELECT 1", "--format", "parquet")
    assert code == 2 and "needs --out" in err


def test_interactive_prompt(output):
    lines = iter(
        [
            ".tables",
            "SELECT item_id",
            "FROM transcripts",
            "ORDER BY item_id;",
            ".schema errors_open",
            "DROP VIEW errors;",
            "SELECT count(*) AS n FROM errors;",
            ".nope",
            ".quit",
            "SELECT 'never read';",
        ]
    )
    written: list[str] = []

    def read(prompt: str) -> str:
        return next(lines)

    shell(connect(output), read=read, write=written.append)
    tables, multi_line, schema, refused, count, unknown = written
    assert "errors_open" in tables and "corpus_wer" in tables
    assert multi_line.splitlines()[2:4] == ["a", "b"]
    assert "error_at" in schema and "TIMESTAMP WITH TIME ZONE" in schema
    assert refused.startswith("error: DROP statements are refused")
    assert count.splitlines()[2] == "1"
    assert "unknown command" in unknown
