"""`audiobatch runs`: the history table read back from a real output folder, including a
runs file written before the nightly columns existed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.cli import main
from pipeline.io.tables import partition_dir, read_table, write_parquet
from pipeline.progress import Counters
from pipeline.runner.run_record import RunPlanned, RunRecord
from pipeline.schemas import RUNS
from pipeline.spec import parse_spec

SPEC = parse_spec(
    {
        "name": "nightly",
        "input": {"uri": "/data"},
        "tasks": [
            {"kind": "ctc", "model": "m"},
            {"kind": "classify", "name": "tags", "model": "m"},
        ],
        "output": {"uri": "/out"},
    }
)
T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def _night(root: str, day: int, items: int, failed: int, planned: RunPlanned) -> str:
    c = Counters()
    c.written(items, failed, audio_s=10.0 * items, bytes=0, tasks={"ctc": (items - failed, failed)})
    c.written(0, 0, 0.0, 0, tasks={"tags": (items, 0)})
    run_id = f"night-{day}"
    record = RunRecord(SPEC, run_id, T0 + timedelta(days=day), pafs.LocalFileSystem(), root)
    record.planned = planned
    record.finish("succeeded", c, 20.0, None)
    return run_id


def _old_style_row(root: str) -> None:
    """A runs file with only the columns the table had before the nightly history."""
    old = [f for f in RUNS if f.name != "message" and f.name not in _NEW] + [RUNS.field("message")]
    row = {
        "run_id": "old-1",
        "spec_hash": "h",
        "spec_json": "{}",
        "versions": "{}",
        "started_at": T0 - timedelta(days=1),
        "ended_at": T0,
        "status": "failed",
        "items": 5,
        "items_ok": 5,
        "items_failed": 0,
        "audio_s": 1.0,
        "wall_s": 2.0,
        "stages": [],
        "message": "RayTaskError: boom",
        "job": "nightly",
    }
    table = pa.Table.from_pylist([row], schema=pa.schema(old))
    write_parquet(
        pafs.LocalFileSystem(),
        f"{partition_dir(root, 'runs', 'job', 'nightly')}/000-old.parquet",
        table,
    )


_NEW = {
    "units",
    "skipped_units",
    "already_done",
    "new_items",
    "retried_errors",
    "changed_sources",
    "tasks",
    "items_per_s",
    "realtime_factor",
}


def test_runs_prints_the_last_nights_with_per_task_counts(tmp_path, capsys):
    root = str(tmp_path / "out")
    _old_style_row(root)
    _night(root, 0, 100, 3, RunPlanned(units=4, skipped_units=0, already_done=0))
    _night(root, 1, 10, 1, RunPlanned(units=1, skipped_units=3, already_done=100, retried_errors=2))
    last = _night(
        root, 2, 0, 0, RunPlanned(units=0, skipped_units=4, changed_sources=("s3://b/a.wav",))
    )

    assert main(["runs", root, "-n", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["run", "started", "(UTC)"]
    body = [line for line in out[1:] if line.startswith("night-")]
    assert [line.split()[0] for line in body] == ["night-0", "night-1", last]
    n1 = body[1].split()
    # items, new, retried, errors, units, skipped, changed
    assert n1[5:12] == ["10", "8", "2", "1", "1", "3", "0"]
    assert "ctc 9/1 tags 10/0" in body[1] and "0.5" in n1  # 10 items in 20 s
    assert f"  {last} changed sources: s3://b/a.wav" in out

    assert main(["runs", root, "-n", "10"]) == 0
    text = capsys.readouterr().out
    old = next(line for line in text.splitlines() if line.startswith("old-1"))
    assert old.split()[6:11] == ["-", "-", "0", "-", "-"], "columns it predates read as unknown"
    assert "old-1 failed: RayTaskError: boom" in text


def test_read_table_keeps_new_columns_when_an_old_file_comes_first(tmp_path):
    root = str(tmp_path / "out")
    _old_style_row(root)
    _night(root, 0, 4, 0, RunPlanned(units=1))
    runs = {r["run_id"]: r for r in read_table(pafs.LocalFileSystem(), root, "runs").to_pylist()}
    assert runs["night-0"]["units"] == 1 and runs["night-0"]["new_items"] == 4
    assert runs["old-1"]["units"] is None and runs["old-1"]["job"] == "nightly"


def test_runs_on_an_output_with_no_runs(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs recorded" in capsys.readouterr().out


def test_a_runs_row_without_the_history_columns_conforms_with_nulls():
    from pipeline.schemas import ADDED_LATER, conform

    row = {f.name: None for f in RUNS if f.name not in ADDED_LATER["runs"]}
    row |= {"run_id": "r", "spec_hash": "h", "spec_json": "{}", "versions": "{}"}
    row |= {"started_at": T0, "ended_at": T0, "status": "succeeded", "job": "nightly"}
    row |= {"items": 0, "items_ok": 0, "items_failed": 0, "audio_s": 0.0, "wall_s": 1.0}
    table = conform(pa.Table.from_pylist([row]), "runs")
    assert table.column("tasks").to_pylist() == [None] and table.schema == RUNS
