"""The runs row of a run, and its stand-in while the run goes (no Ray needed)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.io.tables import parquet_files, read_table
from pipeline.progress import Counters
from pipeline.runner.run_record import OPEN_DIR, RunRecord, record_interrupted
from pipeline.spec import parse_spec

SPEC = parse_spec(
    {
        "name": "rr",
        "input": {"uri": "/in"},
        "tasks": [{"kind": "ctc", "model": "m"}],
        "output": {"uri": "/out"},
    }
)


def _runs(root: str) -> dict[str, dict]:
    table = read_table(pafs.LocalFileSystem(), root, "runs")
    return {} if table is None else {r["run_id"]: r for r in table.to_pylist()}


def _open(root: str) -> list[str]:
    return parquet_files(pafs.LocalFileSystem(), f"{root}/{OPEN_DIR}")


def test_a_finished_run_leaves_its_row_and_no_stand_in(tmp_path):
    root, fs = str(tmp_path), pafs.LocalFileSystem()
    record = RunRecord(SPEC, "r1", datetime.now(UTC), fs, root)
    c = Counters()
    c.written(items=5, failed=1, audio_s=2.0, bytes=10)
    record.tick(c, 1.0)
    assert len(_open(root)) == 1 and _runs(root) == {}
    record.finish("succeeded", c, 2.0, None)
    assert _open(root) == []
    row = _runs(root)["r1"]
    assert (row["status"], row["items"], row["items_failed"]) == ("succeeded", 5, 1)
    assert record_interrupted(fs, root, "r2", quiet_s=0) == []


def test_a_run_whose_driver_died_is_recorded_as_interrupted_by_the_next(tmp_path):
    root, fs = str(tmp_path), pafs.LocalFileSystem()
    c = Counters()
    c.written(items=3, failed=0, audio_s=1.5, bytes=10)
    RunRecord(SPEC, "killed", datetime.now(UTC), fs, root).tick(c, 4.0)
    # Same machine, the driver's pid gone: recorded at once, whatever the quiet time.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (stand_in,) = _open(root)
    row = pq.read_table(stand_in, partitioning=None).to_pylist()[0]
    assert row["message"].startswith("running: driver pid ")
    RunRecord(SPEC, "alive", datetime.now(UTC), fs, root).tick(c, 1.0)  # this process: alive
    _retag(stand_in, dead.pid)
    assert record_interrupted(fs, root, "next", quiet_s=3600) == ["killed"]
    row = _runs(root)["killed"]
    assert (
        row["status"] == "interrupted"
        and row["items"] == 3
        and "found by run next" in row["message"]
    )
    assert [p.rsplit("/", 1)[1] for p in _open(root)] == ["alive.parquet"]
    # No tick for longer than the quiet time: gone too, even with its driver alive.
    assert record_interrupted(fs, root, "later", quiet_s=0) == ["alive"]


def _retag(path: str, pid: int) -> None:
    """Make a stand-in say its driver was `pid` (a process that has ended)."""
    table = pq.read_table(path, partitioning=None)
    message = table.column("message").to_pylist()[0].split(" on ")
    new = f"running: driver pid {pid} on {message[1]}"
    i = table.column_names.index("message")
    pq.write_table(
        table.set_column(i, "message", pa.array([new], table.schema.field(i).type)), path
    )
