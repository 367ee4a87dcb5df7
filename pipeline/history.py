"""`audiobatch runs OUTPUT`: the last runs of an output as a table, newest last.

One line per run from the `runs` table: when, status, wall time, items written (new and
retried errors), errors, work units read and left unread, changed sources, throughput
and per-task rows/errors. Runs written before a column existed show `-` there.
"""

from __future__ import annotations

import argparse
from datetime import datetime

COLUMNS = (
    ("run", "<"),
    ("started (UTC)", "<"),
    ("status", "<"),
    ("wall", ">"),
    ("items", ">"),
    ("new", ">"),
    ("retried", ">"),
    ("errors", ">"),
    ("units", ">"),
    ("skipped", ">"),
    ("changed", ">"),
    ("items/s", ">"),
    ("x rt", ">"),
    ("tasks ok/errors", "<"),
)


def register(sub) -> None:
    """Add the `runs` command to the CLI's subparsers."""
    p = sub.add_parser("runs", help="print the last runs of an output (the nightly history)")
    p.add_argument("output", help="output uri of a job")
    p.add_argument("-n", "--last", type=int, default=10, help="how many runs (default 10)")
    p.add_argument("--job", help="only runs of this job name")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint for the output")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    from pipeline.io.storage import arrow_filesystem
    from pipeline.io.tables import read_table
    from pipeline.spec import StorageOptions

    fs, root = arrow_filesystem(args.output, StorageOptions(endpoint_url=args.endpoint_url))
    table = read_table(fs, root, "runs")
    rows = [] if table is None else table.to_pylist()
    if args.job:
        rows = [r for r in rows if r["job"] == args.job]
    if not rows:
        print(f"no runs recorded under {args.output}")
        return 0
    print(format_runs(last_runs(rows, args.last)))
    return 0


def last_runs(rows: list[dict], n: int) -> list[dict]:
    """The `n` most recent runs, oldest first."""
    return sorted(rows, key=lambda r: r["started_at"])[-n:] if n > 0 else []


def format_runs(rows: list[dict]) -> str:
    """The runs as an aligned text table."""
    cells = [[h for h, _ in COLUMNS], *([_cells(r) for r in rows])]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for row in cells:
        parts = [f"{v:{align}{w}}" for v, (_, align), w in zip(row, COLUMNS, widths, strict=True)]
        lines.append("  ".join(parts).rstrip())
    for r in rows:
        if r.get("changed_sources"):
            lines.append(f"  {r['run_id']} changed sources: {', '.join(r['changed_sources'])}")
        if r["status"] != "succeeded" and r.get("message"):
            lines.append(f"  {r['run_id']} {r['status']}: {r['message']}")
    return "\n".join(lines)


def _cells(r: dict) -> list[str]:
    tasks = " ".join(f"{t['task']} {t['ok']:,}/{t['failed']:,}" for t in r.get("tasks") or [])
    changed = r.get("changed_sources")
    return [
        r["run_id"],
        _when(r["started_at"]),
        r["status"],
        f"{r['wall_s']:.1f}s",
        f"{r['items']:,}",
        _int(r.get("new_items")),
        _int(r.get("retried_errors")),
        f"{r['items_failed']:,}",
        _int(r.get("units")),
        _int(r.get("skipped_units")),
        "-" if changed is None else f"{len(changed):,}",
        _float(r.get("items_per_s")),
        _float(r.get("realtime_factor")),
        tasks or "-",
    ]


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _float(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"
