"""Query benchmark: the views of `pipeline.query` vs the same SQL written by hand, one run.

    .venv/bin/python benchmarks/bench_query.py [--rows 1000000] [--files 50,1000] [--s3] [--repeat 3]

1. Builds outputs of `--rows` transcript rows (two tasks, 200 shards, ten runs) laid out as
   the sink writes them (`transcripts/task=<t>/<write>_<task index>.parquet`, the project's
   `conform` / `with_partition` / `write_parquet`), once per file count in `--files`, the same
   rows each time; with `--s3` also on the moto S3 emulator (started here, on loopback).
2. Times, on each output, `corpus_wer_by_shard` and a worst-20 query three ways:
   - view: through `pipeline.query.connect` (confined connection, views);
   - by hand, same plan: the same answer (newest row per item and task, then the aggregate)
     written inline over `read_parquet(..., hive_partitioning=true)` on a plain connection,
     with the plan the view uses: this ratio is the cost of the view layer;
   - by hand, one window: the usual de-duplication, `row_number()` over every row;
   - naive: what people write without the views: no de-duplication of re-processed rows
     (a wrong answer once an item is re-processed; shown for the cost of de-duplicating).
   Each figure is the best of `--repeat` runs: wall seconds and process CPU seconds.
3. The first query on each fresh connection, which is what one `audiobatch query` process
   pays: `connect` (manifests, listings, binding the views) plus the view's first query,
   against the hand-written SQL's first query on its own fresh connection. DuckDB keeps
   the remote files it read in memory per database (`enable_external_file_cache`), so
   later queries on a connection read less from the store than the first.
Appends what it saw to benchmarks/RESULTS.md, with the machine named.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
SHARDS, RUNS, TASKS = 200, 10, ("ctc", "whisper")

RUNS_SQL = (
    "(SELECT run_id, min(started_at) AS started_at FROM read_parquet({runs}) GROUP BY run_id)"
)
# By hand, the plan the `latest` view uses: only keys written more than once are ranked.
LATEST = """(WITH again AS MATERIALIZED (
        SELECT hash(item_id, task) AS h FROM read_parquet({glob}, hive_partitioning=true)
        GROUP BY h HAVING count(*) > 1)
    SELECT t.* FROM read_parquet({glob}, hive_partitioning=true) t
    ANTI JOIN again a ON hash(t.item_id, t.task) = a.h
    UNION ALL BY NAME
    SELECT t.* FROM read_parquet({glob}, hive_partitioning=true) t
    SEMI JOIN again a ON hash(t.item_id, t.task) = a.h
    LEFT JOIN {runs_sql} r ON r.run_id = t.run_id
    QUALIFY row_number() OVER (PARTITION BY t.item_id, t.task
                               ORDER BY r.started_at DESC, t.run_id DESC) = 1)"""
# By hand, the usual way: one window ranking every row.
WINDOW = """(SELECT t.* FROM read_parquet({glob}, hive_partitioning=true) t
    LEFT JOIN {runs_sql} r ON r.run_id = t.run_id
    QUALIFY row_number() OVER (PARTITION BY t.item_id, t.task
                               ORDER BY r.started_at DESC, t.run_id DESC) = 1)"""
BY_SHARD = """SELECT task, shard, count(*) AS items, sum(ref_words)::BIGINT AS ref_words,
    sum(substitutions + deletions + insertions)::BIGINT AS edits,
    sum(substitutions + deletions + insertions) / nullif(sum(ref_words), 0) AS wer
    FROM {src} GROUP BY task, shard ORDER BY task, shard"""
WORST = """SELECT task, item_id, reference, text, wer FROM {src}
    WHERE ref_words > 0 ORDER BY wer DESC, item_id LIMIT 20"""
QUERIES = {"corpus_wer by shard": BY_SHARD, "worst 20": WORST}
FIRST = next(iter(QUERIES))
VIEW_SQL = {
    "corpus_wer by shard": "SELECT task, shard, items, ref_words, edits, wer "
    "FROM corpus_wer_by_shard ORDER BY task, shard",
    "worst 20": WORST.format(src="latest"),
}


def rows_table(n: int, seed: int = 7):
    """n transcript rows of one task with real-looking columns (ids, text, counts, scores)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    words = np.array(["the", "cat", "sat", "on", "a", "mat", "and", "then", "ran", "off"])
    ids = np.char.add("item-", np.arange(n).astype(str))
    text = [" ".join(rng.choice(words, 12)) for _ in range(min(n, 5000))]
    ref_words = rng.integers(3, 30, n).astype("int32")
    subs = rng.binomial(ref_words, 0.1).astype("int32")
    dels = rng.binomial(ref_words, 0.05).astype("int32")
    ins = rng.poisson(0.5, n).astype("int32")
    cols = {
        "item_id": pa.array(ids),
        "source_uri": pa.array(np.char.add("s3://corpus/", ids)),
        "member": pa.array(ids),
        "shard": pa.array(np.char.add("shard-", (np.arange(n) % SHARDS).astype(str))),
        "duration_s": pa.array(rng.uniform(1, 20, n)),
        "model": pa.array(["facebook/wav2vec2-base-960h"] * n),
        "text": pa.array([text[i % len(text)] for i in range(n)]),
        "reference": pa.array([text[(i * 7) % len(text)] for i in range(n)]),
        "normalizer": pa.array(["basic"] * n),
        "ref_words": pa.array(ref_words),
        "substitutions": pa.array(subs),
        "deletions": pa.array(dels),
        "insertions": pa.array(ins),
        "wer": pa.array((subs + dels + ins) / ref_words),
        "ref_chars": pa.array(ref_words * 4),
        "char_edits": pa.array(subs * 2 + dels + ins),
        "cer": pa.array((subs * 2 + dels + ins) / (ref_words * 4)),
    }
    return pa.table(cols)


def build(fs, root: str, rows: int, files: int) -> None:
    """`rows` transcripts over `files` files and RUNS runs, laid out as the sink writes them."""
    import pyarrow as pa

    from pipeline.io.tables import partition_dir, with_partition, write_parquet
    from pipeline.schemas import TABLES, conform

    start = datetime(2026, 11, 1, tzinfo=UTC)
    run_ids = [
        (start + timedelta(days=r)).strftime("%Y%m%dT%H%M%SZ-") + f"{r:06x}" for r in range(RUNS)
    ]
    per_task = rows // len(TASKS)
    files_per_task = max(1, files // len(TASKS))
    for k, task in enumerate(TASKS):
        base = rows_table(per_task, seed=k)
        step = -(-per_task // files_per_task)
        for f in range(files_per_task):
            part = base.slice(f * step, step)
            run = run_ids[f * RUNS // files_per_task]
            part = part.append_column("run_id", pa.array([run] * part.num_rows))
            for field in TABLES["transcripts"][0]:
                if field.name not in part.column_names:
                    part = part.append_column(field.name, pa.nulls(part.num_rows, field.type))
            part = conform(with_partition(part, "transcripts", task), "transcripts")
            folder = partition_dir(root, "transcripts", "task", task)
            write_parquet(fs, f"{folder}/{run[-6:]}{f:04d}_{f:06d}.parquet", part)
        # The task's identity record, as the first run writing it leaves it (with the model's
        # revision: every file has the column, so the views read without union_by_name).
        fs.create_dir(f"{root}/_tasks", recursive=True)
        with fs.open_output_stream(f"{root}/_tasks/{task}.json") as record:
            record.write(json.dumps({"kind": "ctc", "model_revision": f"sha256:{k:016x}"}).encode())
    for r, run in enumerate(run_ids):
        row = {
            "run_id": run, "spec_hash": "h", "spec_json": "{}", "versions": "{}",
            "started_at": start + timedelta(days=r), "ended_at": start + timedelta(days=r, hours=1),
            "status": "succeeded", "items": 0, "items_ok": 0, "items_failed": 0, "audio_s": 0.0,
            "wall_s": 1.0, "stages": [], "message": None,
        }  # fmt: skip
        table = conform(with_partition(pa.Table.from_pylist([row]), "runs", "bench"), "runs")
        write_parquet(fs, f"{partition_dir(root, 'runs', 'job', 'bench')}/{run}.parquet", table)


def best(fn, repeat: int) -> tuple[float, float, object, float]:
    """Best wall and process-CPU seconds of `repeat` calls, the last result, and the first
    call's wall seconds (the cold one when nothing has read the files yet)."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), out, walls[0]


def measure(uri: str, storage, repeat: int) -> dict:
    import duckdb

    from pipeline.io.storage import filesystem, is_remote
    from pipeline.query import connect
    from pipeline.query.confine import sql_literal

    started = time.perf_counter()
    view_con = connect(uri, storage)
    connect_s = time.perf_counter() - started
    hand_con = duckdb.connect()
    fs, path = filesystem(uri, storage)
    root = fs.unstrip_protocol(path) if is_remote(uri) else path
    if is_remote(uri):
        from pipeline.query.connection import reader_filesystem

        hand_con.register_filesystem(reader_filesystem(fs))  # the same filesystem as the view
    glob = sql_literal(f"{root}/transcripts/**/*.parquet")
    runs_sql = RUNS_SQL.format(runs=sql_literal(f"{root}/runs/**/*.parquet"))
    sources = {
        "by hand": LATEST.format(glob=glob, runs_sql=runs_sql),
        "window": WINDOW.format(glob=glob, runs_sql=runs_sql),
        "naive": f"read_parquet({glob}, hive_partitioning=true)",
    }
    out = {}
    for name, template in QUERIES.items():
        sql = {"view": VIEW_SQL[name]} | {k: template.format(src=v) for k, v in sources.items()}
        results = {
            side: best(
                lambda q=q, c=(view_con if side == "view" else hand_con): c.sql(q).fetchall(),
                repeat,
            )
            for side, q in sql.items()
        }
        if (
            results["view"][2] != results["by hand"][2]
            or results["view"][2] != results["window"][2]
        ):
            raise SystemExit(f"{name}: the view and the hand-written SQL disagree")
        out[name] = {side: r[:2] for side, r in results.items()}
        if name == FIRST:  # each connection's first query: what one `audiobatch query` costs
            cold = {"connect": connect_s} | {s: results[s][3] for s in ("view", "by hand")}
    return {"queries": out, "cold": cold}


def report(rows: int, figures: dict) -> str:
    lines = [
        "| storage | files | query | view s (CPU s) | by hand, same plan | by hand, one window "
        "| naive, no de-dup | view / by hand |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for (storage, files), measured in figures.items():
        for name, s in measured["queries"].items():
            cells = " | ".join(
                f"{s[k][0]:.2f} ({s[k][1]:.2f})" for k in ("view", "by hand", "window", "naive")
            )
            ratio = s["view"][0] / s["by hand"][0]
            lines.append(f"| {storage} | {files:,} | {name} | {cells} | **{ratio:.2f}x** |")
    lines += ["", f"First query on a fresh connection ({FIRST}; what one `audiobatch query` pays):"]
    lines += [
        "",
        "| storage | files | connect s | view, first query s | connect + view | "
        "by hand, first query s | (connect + view) / by hand |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (storage, files), measured in figures.items():
        c = measured["cold"]
        total = c["connect"] + c["view"]
        lines.append(
            f"| {storage} | {files:,} | {c['connect']:.2f} | {c['view']:.2f} | {total:.2f} "
            f"| {c['by hand']:.2f} | **{total / c['by hand']:.2f}x** |"
        )
    from pipeline.testing.machine import machine_line

    head = (
        f"## Queries over {rows:,} transcript rows (`bench_query.py`) — "
        f"{datetime.now(UTC):%Y-%m-%d} — {machine_line()}"
    )
    return head + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--files", default="50,1000")
    p.add_argument("--s3", action="store_true", help="also on the moto S3 emulator")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-record", action="store_true", help="print only, do not append RESULTS.md")
    args = p.parse_args()
    import pyarrow.fs as pafs

    from pipeline.spec import StorageOptions

    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        targets = []
        for files in (int(x) for x in args.files.split(",")):
            root = f"{tmp}/out-{files}"
            build(pafs.LocalFileSystem(), root, args.rows, files)
            targets.append(("local", files, root, None))
        server = _s3_targets(args, targets) if args.s3 else None
        try:
            for storage, files, uri, options in targets:
                print(f"measuring {storage}, {files} files ...", flush=True)
                figures[(storage, files)] = measure(uri, options or StorageOptions(), args.repeat)
        finally:
            if server is not None:
                server.terminate()
                server.wait()
    text = report(args.rows, figures)
    print(text)
    if not args.no_record:
        with RESULTS.open("a") as f:
            f.write("\n" + text)


def _s3_targets(args, targets: list) -> object:
    """Start moto in its own process on loopback (in-process, it shares the GIL with DuckDB's
    fsspec calls) and build the same outputs there; returns the server process."""
    import socket
    import subprocess
    import sys

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    from pipeline.io.storage import arrow_filesystem
    from pipeline.spec import StorageOptions

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    storage = StorageOptions(endpoint_url=f"http://127.0.0.1:{port}")
    for _ in range(100):
        try:
            boto3.client("s3", endpoint_url=storage.endpoint_url).create_bucket(Bucket="bench")
            break
        except Exception:  # not listening yet
            time.sleep(0.1)
    for storage_kind, files, _, _ in list(targets):
        if storage_kind == "local":
            uri = f"s3://bench/out-{files}"
            fs, root = arrow_filesystem(uri, storage)
            build(fs, root, args.rows, files)
            targets.append(("s3 (moto)", files, uri, storage))
    return server


if __name__ == "__main__":
    main()
