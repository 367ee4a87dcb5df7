"""The README's example queries run against a real output, so they cannot rot."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.query import connect, run_statement
from tests.query.outputs import item, local, write_run

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_queries() -> list[str]:
    text = README.read_text()
    section = text.split("## Querying the tables", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    fs, root = local(tmp_path_factory.mktemp("out"))
    yesterday = datetime.now(UTC) - timedelta(days=3)
    tonight = datetime.now(UTC) - timedelta(hours=1)
    tasks = {"tasks": ("ctc", "whisper"), "classify": ("sounds",)}
    write_run(
        fs,
        root,
        "20261101T000000Z-aaaaaa",
        yesterday,
        [
            item("a", ctc={"ref_words": 4, "substitutions": 2}, whisper={"ref_words": 4},
                 sounds=[("speech", 0.9), ("music", 0.1)]),
            item("b", shard="s2", ctc={"ref_words": 2}, whisper="model_failed",
                 sounds=[("music", 0.8)]),
            item("c", error="truncated"),
        ],
        **tasks,
    )  # fmt: skip
    write_run(
        fs,
        root,
        "20261102T000000Z-bbbbbb",
        tonight,
        [item("d", ctc={"ref_words": 3, "insertions": 1}, whisper={"ref_words": 3},
              sounds=[("speech", 0.7)])],
        **tasks,
    )  # fmt: skip
    return connect(root)


def test_the_readme_has_the_six_examples():
    assert len(readme_queries()) == 6


@pytest.mark.parametrize("sql", readme_queries(), ids=lambda q: q.splitlines()[0][3:40])
def test_readme_query_runs_and_finds_rows(con, sql):
    result, _ = run_statement(con, sql)
    assert result.num_rows > 0
    first = result.to_pylist()[0]
    title = sql.splitlines()[0]
    if "WER by shard" in title:
        assert (first["task"], first["shard"], first["wer_pct"]) == ("ctc", "s1", round(300 / 7, 2))
    elif "worst items" in title:
        assert (first["item_id"], first["edits"], first["wer"]) == ("a", 2, 0.5)
    elif "label" in title:
        assert (first["task"], first["label"], first["items"]) == ("sounds", "speech", 2)
    elif "last 24 hours" in title:
        assert {r["task"]: r["items"] for r in result.to_pylist()} == {"ctc": 1, "whisper": 1}
    elif "open errors" in title:
        assert sorted((r["task"], r["error_code"]) for r in result.to_pylist()) == [
            ("(all tasks)", "truncated"),
            ("whisper", "model_failed"),
        ]
    elif "side by side" in title:
        assert (first["item_id"], first["ctc_wer"], first["whisper_wer"]) == ("a", 0.5, 0.0)
    else:
        pytest.fail(f"an example the test does not know: {title}")
