"""The `runs` table's row of a run, and what stands in for it while the run goes.

A driver killed with SIGKILL (or a lost machine) writes no row of its own. So while
a run goes, its row with status `interrupted` and the counts of its last progress
tick is kept under `_runs_open/` and rewritten every tick; the final row replaces
it. A later run on the same output that finds such a row whose driver is gone (its
pid on this machine, or no tick for a few intervals) writes it to `runs`
(`record_interrupted`), so every run that started is in `runs`.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.io.tables import parquet_files, partition_dir, with_partition, write_parquet
from pipeline.progress import Counters
from pipeline.schemas import conform
from pipeline.spec import JobSpec

OPEN_DIR = "_runs_open"
_INTERRUPTED = (
    "the run ended without recording its end (driver killed or machine lost); counts are "
    "as of its last progress tick, found by run {by}"
)


@dataclass(frozen=True)
class RunPlanned:
    """What planning found, for the nightly history (`audiobatch runs`). None: not known."""

    units: int = 0  # work units read this run
    skipped_units: int | None = None  # units left unread: every item in them done
    already_done: int | None = None  # items skipped at planning: an earlier run wrote them
    retried_errors: int = 0  # (item, task) errors of earlier runs retried by this one
    changed_sources: tuple[str, ...] = field(default=())


class RunRecord:
    """The row of one run: `tick` keeps the stand-in current, `finish` writes the real one."""

    def __init__(self, spec: JobSpec, run_id: str, started: datetime, fs, root: str):
        self._spec, self._run_id, self._started = spec, run_id, started
        self._fs, self._root = fs, root
        self.planned = RunPlanned()
        self._open = f"{partition_dir(root, OPEN_DIR, 'job', spec.name)}/{run_id}.parquet"

    def tick(self, counters: Counters, wall_s: float) -> None:
        """Rewrite the stand-in row (status `interrupted`) with the counts so far."""
        row = self._row("interrupted", counters, wall_s, _running())
        write_parquet(self._fs, self._open, row)

    def finish(self, status: str, counters: Counters, wall_s: float, message: str | None) -> None:
        """Write the run's row to `runs`, then drop its stand-in."""
        row = self._row(status, counters, wall_s, message)
        write_parquet(self._fs, runs_path(self._root, self._spec.name, self._run_id), row)
        if _exists(self._fs, self._open):
            self._fs.delete_file(self._open)

    def _row(self, status: str, c: Counters, wall_s: float, message: str | None) -> pa.Table:
        from pipeline.versions import versions

        row = {
            "run_id": self._run_id,
            "spec_hash": self._spec.spec_hash(),
            "spec_json": self._spec.model_dump_json(),
            "versions": json.dumps(versions()),
            "started_at": self._started,
            "ended_at": datetime.now(UTC),
            "status": status,
            "items": c.items,
            "items_ok": c.items - c.failed,
            "items_failed": c.failed,
            "audio_s": c.audio_s,
            "wall_s": wall_s,
            "stages": [
                {"stage": k, "items": v.items, "audio_s": v.audio_s, "busy_s": v.busy_s}
                for k, v in c.stages.items()
            ],
            "message": message,
            **_history(self.planned, c, wall_s),
        }
        return conform(with_partition(pa.Table.from_pylist([row]), "runs", self._spec.name), "runs")


def _history(planned: RunPlanned, c: Counters, wall_s: float) -> dict:
    """The nightly columns of a runs row: what kind of night it was."""
    return {
        "units": planned.units,
        "skipped_units": planned.skipped_units,
        "already_done": planned.already_done,
        "new_items": max(c.items - planned.retried_errors, 0),
        "retried_errors": planned.retried_errors,
        "changed_sources": list(planned.changed_sources),
        "tasks": [{"task": k, "ok": v.ok, "failed": v.failed} for k, v in c.tasks.items()],
        "items_per_s": c.items / wall_s if wall_s > 0 else None,
        "realtime_factor": c.audio_s / wall_s if wall_s > 0 else None,
    }


def runs_path(root: str, job: str, run_id: str) -> str:
    return f"{partition_dir(root, 'runs', 'job', job)}/{run_id}.parquet"


def record_interrupted(fs, root: str, by_run: str, quiet_s: float) -> list[str]:
    """Move stand-in rows not ticked for `quiet_s` (their run is gone) into `runs`; their ids.

    A stand-in ticked more recently may belong to a run still going, and is left alone."""
    found = []
    now = datetime.now(UTC)
    for path in parquet_files(fs, posixpath.join(root, OPEN_DIR)):
        table = pq.read_table(path, filesystem=fs, partitioning=None)
        (row,) = table.to_pylist()
        if now - row["ended_at"] < timedelta(seconds=quiet_s) and not _driver_gone(row):
            continue
        row["message"] = _INTERRUPTED.format(by=by_run)
        job = json.loads(row["spec_json"])["name"]
        out = pa.Table.from_pylist([row], schema=table.schema)
        out = conform(with_partition(out, "runs", job), "runs")
        write_parquet(fs, runs_path(root, job, row["run_id"]), out)
        fs.delete_file(path)
        found.append(row["run_id"])
    return found


def _running() -> str:
    return f"running: driver pid {os.getpid()} on {socket.gethostname()}"


def _driver_gone(row: dict) -> bool:
    """True when the stand-in's driver ran on this machine and its process is gone."""
    match = re.fullmatch(r"running: driver pid (\d+) on (.+)", row.get("message") or "")
    if match is None or match.group(2) != socket.gethostname():
        return False  # another machine's driver: only time tells
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _exists(fs, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File
