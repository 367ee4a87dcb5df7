"""Exit code 4: more than runtime.max_error_share of a run's items failed."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.columns import ITEM_SCHEMA
from pipeline.io.tables import partition_dir, split_batch, write_parquet
from pipeline.reports.failures import failure_report, too_many_errors, top_errors


def test_the_share_is_strictly_more_than_the_limit():
    assert not too_many_errors(10, 5, 0.5)
    assert too_many_errors(10, 6, 0.5)
    assert not too_many_errors(0, 0, 0.5)
    assert too_many_errors(10, 1, 0.0)


def _write_errors(root: str, run_id: str, codes: list[str]) -> None:
    rows = [
        {
            "item_id": f"{run_id}{i}",
            "source_uri": f"/c/{i}.wav",
            "member": "",
            "shard": ".",
            "metadata": f'{{"path": "orig/{i}.wav"}}',
            "error_stage": "read",
            "error_code": code,
            "error_message": f"message {i}",
        }
        for i, code in enumerate(codes)
    ]
    parts = split_batch(pa.Table.from_pylist(rows, schema=ITEM_SCHEMA), [], run_id)
    fs = pafs.LocalFileSystem()
    for (table, value), t in parts.items():
        write_parquet(fs, f"{partition_dir(root, table, 'stage', value)}/{run_id}.parquet", t)


def test_top_errors_are_this_runs_most_common_codes_with_an_example(tmp_path):
    root = str(tmp_path)
    _write_errors(root, "old", ["undecodable"] * 5)
    _write_errors(root, "now", ["missing_audio", "missing_audio", "too_large"])
    top = top_errors(pafs.LocalFileSystem(), root, "now")
    assert [(c, n) for c, n, _ in top] == [("missing_audio", 2), ("too_large", 1)]
    assert top[0][2] == "/c/0.wav: message 0"
    text = failure_report(3, 3, 0.5, top)
    assert "exit code 4" in text and "missing_audio x2, e.g. /c/0.wav: message 0" in text


def test_error_rows_keep_the_items_metadata(tmp_path):
    from pipeline.io.tables import read_table

    _write_errors(str(tmp_path), "r", ["missing_audio"])
    errors = read_table(pafs.LocalFileSystem(), str(tmp_path), "errors")
    assert errors.column("metadata").to_pylist() == ['{"path": "orig/0.wav"}']
