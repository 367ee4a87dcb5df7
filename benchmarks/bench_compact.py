"""Compaction benchmark: the same view queries over 1,000 small files, then after `compact`.

    .venv/bin/python benchmarks/bench_compact.py [--rows 1000000] [--files 1000] [--repeat 3]

Builds, with `bench_query.build` (the sink's layout: `transcripts/task=<t>/...`, ten runs), an
output of `--rows` transcript rows in 50 files and the same rows in `--files` files, then
times `bench_query`'s view queries (`corpus_wer_by_shard`, worst 20, through
`pipeline.query.connect`) on

- 50 files (the reference bench_query compared against);
- `--files` files;
- the same output right after `audiobatch compact` (the replaced files still there, within
  the grace period: the view skips them by name before opening any);
- after a second compact past the grace period (the replaced files deleted).

Each figure is the best of `--repeat` runs: wall seconds and process CPU seconds; every
answer is checked equal to the 50-file one. Appends what it saw to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.bench_query import RESULTS, VIEW_SQL, best, build  # noqa: E402


def measure(uri: str, repeat: int) -> dict:
    from pipeline.query import connect

    con = connect(uri)
    return {name: best(lambda q=q: con.sql(q).fetchall(), repeat) for name, q in VIEW_SQL.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-record", action="store_true", help="print only, do not append RESULTS.md")
    args = p.parse_args()
    import pyarrow.fs as pafs

    from pipeline.io.compact import CompactOptions, compact_output

    fs = pafs.LocalFileSystem()
    figures, compact_s = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        few, many = f"{tmp}/few", f"{tmp}/many"
        build(fs, few, args.rows, 50)
        build(fs, many, args.rows, args.files)
        figures["50 files"] = measure(few, args.repeat)
        figures[f"{args.files:,} files"] = measure(many, args.repeat)
        for label, grace in (
            ("compacted (replaced files kept)", 3600.0),
            ("replaced files deleted", 0.0),
        ):
            t, c = time.perf_counter(), time.process_time()
            compact_output(many, None, CompactOptions(grace_s=grace), out=lambda line: None)
            compact_s[label] = (time.perf_counter() - t, time.process_time() - c)
            figures[label] = measure(many, args.repeat)
    reference = figures["50 files"]
    for label, queries in figures.items():
        for name, (_, _, answer) in queries.items():
            if answer != reference[name][2]:
                raise SystemExit(f"{label}, {name}: the answer differs from the 50-file output's")
    text = report(args, figures, compact_s)
    print(text)
    if not args.no_record:
        with RESULTS.open("a") as f:
            f.write("\n" + text)


def report(args, figures: dict, compact_s: dict) -> str:
    many = figures[f"{args.files:,} files"]
    lines = [
        "| output | query | wall s | CPU s | CPU vs 1,000 files | compact wall s (CPU s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, queries in figures.items():
        for name, (wall, cpu, _) in queries.items():
            took = compact_s.get(label)
            cell = f"{took[0]:.2f} ({took[1]:.2f})" if took and name == next(iter(queries)) else ""
            ratio = cpu / many[name][1]
            lines.append(f"| {label} | {name} | {wall:.2f} | {cpu:.2f} | {ratio:.2f}x | {cell} |")
    from pipeline.testing.machine import machine_line

    head = (
        f"## Compaction: queries over {args.rows:,} transcript rows in {args.files:,} files, "
        f"before and after `compact` (`bench_compact.py`) — {datetime.now(UTC):%Y-%m-%d} — "
        f"{machine_line()}"
    )
    return head + "\n\n" + "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
