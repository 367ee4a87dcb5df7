"""The runner: a run from its lease to its runs row; the only package that uses Ray.

`run_job` takes the output's lease, reads what earlier runs settled, lists the input and
plans the work units (skipping settled files and shards, noting changed sources), then
hands the units to `runner/execute.py` (the Ray Data pipeline). A night with nothing to
do ends before that: it neither starts nor imports Ray. A run that succeeded merges the
completion files its writes left (one per write) into one before its runs row, still
under the lease (io/completion.py `merge_small`), so the next night reads few files.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pipeline.errors import AudiobatchError, StorageError
from pipeline.io.completion import CHECKPOINT_DIR, Completion, RetryPolicy, merge_small
from pipeline.io.lease import Lease, acquire, atomic_create
from pipeline.io.sources import write_unit_records
from pipeline.io.storage import (
    arrow_filesystem,
    bounded,
    filesystem,
    is_storage_failure,
    probe,
    storage_errors,
)
from pipeline.io.task_identity import check_tasks, record_tasks
from pipeline.models.revision import resolve_revisions
from pipeline.plan import Plan, build_plan
from pipeline.progress import Counters
from pipeline.runner.night import plan_night
from pipeline.runner.run_record import RunPlanned, RunRecord, record_interrupted
from pipeline.spec import JobSpec


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    counters: Counters
    wall_s: float
    output_uri: str
    message: str | None = None
    report: dict | None = None  # the output's report, written next to the tables


def run_job(
    spec: JobSpec,
    *,
    out: Callable[[str], None] = print,
    retry: RetryPolicy | None = None,
    verbose: bool = False,
    report: bool = True,
) -> RunResult:
    """Run `spec` to completion on the configured (or a local) Ray cluster.

    The output's lease is taken first: while another run holds it, `LeaseHeld` is raised
    and nothing is read or written. `retry` says which permanent errors of earlier runs
    to retry (transient ones always are; io/completion.py); `verbose` lets every line of
    Ray's own output through (see runner/ray_logs.py). After a successful run the
    output's report (report.json/.md/.html, pipeline/reports/) is written and returned
    in `RunResult.report`, unless `report` is False."""
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    started, t0 = datetime.now(UTC), time.monotonic()
    plan = build_plan(spec)
    probe(spec.output.uri, spec.output.storage, "output")
    probe(spec.input.uri, spec.input.storage, "input")
    # Each model's revision, resolved once here: recorded in every row, pinned for every actor.
    plan = build_plan(spec, resolve_revisions(spec))
    fs, root = filesystem(spec.output.uri, spec.output.storage)
    with storage_errors(spec.output.uri, "output", spec.output.storage):
        check_tasks(fs, root, spec, plan.revisions)  # a task changed under its old name: refused
        lease = _take_lease(spec, run_id, out)  # another run alive: refused, nothing written
    with lease:
        result = _leased_run(
            spec, plan, run_id, started, t0, lease, retry or RetryPolicy(), out, verbose
        )
    if result.status != "succeeded":
        raise RunFailed(f"run {run_id} failed: {result.message}")
    if report:
        from pipeline.reports.report import report_output

        result = replace(result, report=report_output(spec))
    return result


def _leased_run(spec, plan, run_id, started, t0, lease, retry, out, verbose) -> RunResult:
    out_fs, out_root = arrow_filesystem(spec.output.uri, spec.output.storage)
    fs, root = filesystem(spec.output.uri, spec.output.storage)
    with storage_errors(spec.output.uri, "output", spec.output.storage):
        record_tasks(fs, root, spec, plan.revisions)
    names = [t.name for t in plan.tasks]
    inputs, done = plan_night(spec, names, retry, out_fs, out_root, run_id)
    record = RunRecord(spec, run_id, started, out_fs, out_root)
    record.planned = RunPlanned(
        units=len(inputs.units),
        skipped_units=inputs.skipped_units,
        already_done=inputs.already_done,
        retried_errors=done.retried,
        changed_sources=inputs.changed_sources,
    )
    with storage_errors(spec.output.uri, "output", spec.output.storage):
        quiet = max(60.0, 3 * spec.runtime.progress_interval_s)
        gone = record_interrupted(out_fs, out_root, run_id, quiet_s=quiet)
        bounded(lambda: record.tick(Counters(), 0.0), spec.output.storage.timeout_s, "runs row")
    if gone:
        out(f"recorded {len(gone)} earlier run(s) as interrupted in runs: {', '.join(gone)}")
    out(_header(run_id, inputs, plan, done, spec.output.uri))
    for warning in inputs.warnings:
        out(f"warning: {warning}")
    if inputs.changed_sources:
        out(_changed_line(inputs.changed_sources, spec.incremental.reprocess_changed))
    status, counters, message = "succeeded", Counters(), "nothing to do"
    if inputs.units:
        from pipeline.runner.execute import execute  # Ray is imported only when there is work

        status, counters, message = execute(
            spec, plan, inputs, done, run_id, out_fs, out_root, out, record, verbose
        )
    else:
        out("nothing to do: every input item is already in the output")
    if lease.lost:
        status, message = "failed", f"lost the output's lease: {_lost(lease)}"
    if status == "succeeded" and inputs.units:  # committed: these shards are settled
        with storage_errors(spec.output.uri, "output", spec.output.storage):
            write_unit_records(out_fs, out_root, run_id, inputs.units, names)
        _merge_records(spec, out_fs, out_root, run_id, lease, out)
    wall = time.monotonic() - t0
    try:
        bounded(
            lambda: record.finish(status, counters, wall, message),
            spec.output.storage.timeout_s,
            f"writing the runs row to {spec.output.uri}",
        )
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        what = f"run {run_id} {status}" + (f" ({message})" if status != "succeeded" else "")
        raise StorageError(
            f"{what}, but its runs row could not be written to {spec.output.uri}: "
            f"{type(exc).__name__}: {exc}; check that the output storage is reachable, then "
            "re-run (it resumes)"
        ) from None
    return RunResult(run_id, status, counters, wall, spec.output.uri, message)


def _merge_records(spec, out_fs, out_root: str, run_id: str, lease: Lease, out) -> None:
    """The run's completion files merged into one while it still holds the lease; a
    storage failure here only leaves them for the next night's planner to merge."""
    if lease.lost:
        return
    try:
        merge_small(out_fs, out_root, CHECKPOINT_DIR, run_id)
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        out(
            f"warning: the run's completion records were not merged ({type(exc).__name__}: "
            f"{exc}); the next run merges them"
        )


class RunFailed(AudiobatchError):
    """The Ray job raised; the runs table has a `failed` row, and a re-run resumes."""

    exit_code = 6


def _take_lease(spec: JobSpec, run_id: str, out: Callable[[str], None]) -> Lease:
    fs, root = filesystem(spec.output.uri, spec.output.storage)
    lease = acquire(fs, root, run_id, spec.output.lease_ttl_s, where=spec.output.uri)
    if not atomic_create(fs):
        out(
            f"warning: {spec.output.uri}: this storage has no exclusive create known to "
            "audiobatch; two runs started at the same moment could both take the lease"
        )
    if lease.taken_over is not None:
        old = lease.taken_over
        out(
            f"took over the lease of run {old.run_id} (host {old.host}, pid {old.pid}): "
            f"no heartbeat since {datetime.fromtimestamp(old.heartbeat_at, UTC):%Y-%m-%d %H:%M:%SZ}"
        )
    return lease.start_heartbeat()


def _lost(lease: Lease) -> str:
    return (
        f"no heartbeat could be written for {lease.info.ttl_s:g} s and another run took the "
        "lease over, so both may have written the same items meanwhile; raise "
        "output.lease_ttl_s if this run was only slow"
    )


def _changed_line(changed: tuple[str, ...], reprocess: bool) -> str:
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5:,} more" if len(changed) > 5 else "")
    then = (
        "their items are processed again (incremental.reprocess_changed)"
        if reprocess
        else "their earlier rows are kept; set incremental.reprocess_changed: true to process "
        "them again"
    )
    return f"{len(changed):,} source(s) changed since they were processed ({shown}): {then}"


def _header(run_id: str, inputs, plan: Plan, done: Completion, output_uri: str) -> str:
    items = inputs.total_items if inputs.total_items is not None else "unknown"
    line = (
        f"audiobatch run {run_id}: {len(inputs.units)} work units ({inputs.format}), {items} items, "
        f"tasks: {', '.join(t.name for t in plan.tasks)}"
    )
    if inputs.skipped_units:
        line += f"; {inputs.skipped_units:,} units settled earlier, not read"
    if len(done.done_all):
        line += f"; {len(done.done_all):,} items already done in {output_uri}"
    partial = {t: len(ids) - len(done.done_all) for t, ids in done.done.items()}
    if any(partial.values()):  # a task added to the spec runs over the old items
        line += (
            " (done for some tasks only: "
            + ", ".join(f"{t} {n:,}" for t, n in partial.items() if n)
            + ")"
        )
    if done.retried:
        line += f"; retrying {done.retried:,} earlier errors"
    return line
