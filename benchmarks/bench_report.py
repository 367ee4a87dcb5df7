"""Report benchmark: build report.json + report.md + report.html over a large output, one run.

    .venv/bin/python benchmarks/bench_report.py [--rows 1000000] [--resamples 1000]

Writes an output of `--rows` transcript rows (two ASR tasks over the same items, so the
comparison section runs too; 100 shards; 200 speakers in the manifest metadata; a first
run and a second run adding 10% new items, so the drift section runs; a few errors), laid
out as the sink writes it (`conform` / `with_partition` / `write_parquet`, 20 files per task
and run). Then builds the report in a fresh child process (the way `audiobatch report` does)
and reports its wall time, process CPU time and peak RSS (`ru_maxrss` of the child), with
the time of each part. Targets (issue 14): under 60 s and under 2 GiB. Appends to
benchmarks/RESULTS.md with the machine named.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the output builder lives in tests/reports/outputs.py
WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "you",
    "that",
    "he",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
]

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter(); c0 = time.process_time()
import pyarrow.fs as pafs
from pipeline.reports.report import ReportRequest, build_report, write_report
t1 = time.perf_counter(); c1 = time.process_time()
report = build_report(ReportRequest(sys.argv[1]))
t2 = time.perf_counter(); c2 = time.process_time()
write_report(pafs.LocalFileSystem(), sys.argv[1], report)
t3 = time.perf_counter(); c3 = time.process_time()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "write_s": t3 - t2,
                  "import_cpu": c1 - c0, "build_cpu": c2 - c1, "write_cpu": c3 - c2,
                  "wall_s": t3 - t0, "cpu_s": c3 - c0,
                  "tasks": {t: s["items"] for t, s in report["tasks"].items()},
                  "wer_ci": report["tasks"]["ctc"]["wer_ci"],
                  "comparisons": len(report["comparisons"]),
                  "drift_new": report["drift"]["tasks"]["ctc"]["new_items"]}))
"""


def _sentences(rng, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=rng.integers(5, 30))) for _ in range(n)]


def _table(rng, ids, run_id: str, task: str, refs, hyps):
    import numpy as np
    import pyarrow as pa

    from pipeline.io.tables import with_partition
    from pipeline.schemas import TRANSCRIPTS, conform

    n = len(ids)
    pick = rng.integers(0, len(refs), size=n)
    ref = pa.array(refs).take(pa.array(pick))
    hyp = pa.array(hyps).take(pa.array(pick))
    words = np.array([len(s.split()) for s in refs])[pick]
    subs = rng.poisson(0.1 if task == "ctc" else 0.08, n) * words // 3
    dels, ins = rng.poisson(0.5, n), rng.poisson(0.3, n)
    subs = np.minimum(subs, words - np.minimum(dels, words))
    dels = np.minimum(dels, words - subs)
    cols = {
        "item_id": pa.array(ids),
        "source_uri": pa.array([f"/corpus/{i}.flac" for i in ids]),
        "member": pa.array([""] * n),
        "shard": pa.array([f"shard-{k % 100:03d}" for k in range(n)]),
        "duration_s": pa.array(words / 2.5 + rng.random(n)),
        "model": pa.array([f"model-{task}"] * n),
        "text": hyp,
        "confidence": pa.array(rng.random(n)),
        "reference": ref,
        "normalizer": pa.array(["basic"] * n),
        "ref_words": pa.array(words, pa.int32()),
        "substitutions": pa.array(subs, pa.int32()),
        "deletions": pa.array(dels, pa.int32()),
        "insertions": pa.array(ins, pa.int32()),
        "wer": pa.array((subs + dels + ins) / words),
        "ref_chars": pa.array(words * 5, pa.int32()),
        "char_edits": pa.array((subs + dels + ins) * 3, pa.int32()),
        "cer": pa.array((subs + dels + ins) * 3 / (words * 5)),
        "metadata": pa.array(
            pa.array([json.dumps({"speaker": f"spk{s}"}) for s in range(200)]).take(
                pa.array(rng.integers(0, 200, size=n))
            )
        ),
        "run_id": pa.array([run_id] * n),
    }
    full = {f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in TRANSCRIPTS if f.name != "task"}
    return conform(with_partition(pa.table(full), "transcripts", task), "transcripts")


def build_output(root: str, rows: int, seed: int = 0) -> None:
    import numpy as np

    from pipeline.io.tables import partition_dir, write_parquet
    from tests.reports.outputs import FS, run_row, write

    rng = np.random.default_rng(seed)
    refs = _sentences(rng, 5000)
    hyps = [" ".join(w if rng.random() > 0.1 else "uh" for w in s.split()) for s in refs]
    items = rows // 2
    first = int(items * 0.9)
    for run_id, lo, hi, hour in (("r1", 0, first, 1), ("r2", first, items, 2)):
        ids = [f"item{k:08d}" for k in range(lo, hi)]
        for task in ("ctc", "whisper"):
            table = _table(rng, ids, run_id, task, refs, hyps)
            step = -(-table.num_rows // 20)
            for part in range(20):
                path = f"{partition_dir(root, 'transcripts', 'task', task)}/{run_id}_{part:03d}.parquet"
                write_parquet(FS, path, table.slice(part * step, step))
        run_row(root, run_id, hour, hi - lo)
    errors = [
        {
            "item_id": f"bad{k}",
            "source_uri": f"/corpus/bad{k}.flac",
            "member": "",
            "shard": "shard-000",
            "task": None,
            "error_code": "truncated",
            "error_message": "decoded 1.2 s of a declared 4.0 s",
            "run_id": "r2",
        }
        for k in range(50)
    ]
    write(root, "errors", "decode", errors)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = os.path.join(tmp, "out")
        t = time.perf_counter()
        build_output(root, args.rows)
        print(f"wrote {args.rows:,} transcript rows in {time.perf_counter() - t:.1f} s")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, root],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            sys.exit(done.stderr)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result = json.loads(done.stdout.strip().splitlines()[-1])
        html_kib = os.path.getsize(os.path.join(root, "report.html")) / 1024
    _record(args.rows, result, peak_mib, html_kib)


def _record(rows: int, r: dict, peak_mib: float, html_kib: float) -> None:
    from pipeline.testing.machine import machine_line

    lines = [
        f"\n## Report over {rows:,} transcript rows — {datetime.now(UTC):%Y-%m-%d} — "
        f"{machine_line()}\n",
        "`benchmarks/bench_report.py`: two ASR tasks over the same items (comparison runs),",
        "two runs (drift runs), 100 shards, 200 speakers, 1,000 bootstrap resamples, 10,000",
        "items re-aligned per task for the confusion tallies, 20 worst items aligned.\n",
        "| part | wall s | process CPU s |\n|---|---:|---:|",
        f"| import | {r['import_s']:.1f} | {r['import_cpu']:.1f} |",
        f"| build (DuckDB queries, bootstrap, alignments) | {r['build_s']:.1f} | {r['build_cpu']:.1f} |",
        f"| write json + md + html (plots) | {r['write_s']:.1f} | {r['write_cpu']:.1f} |",
        f"| **whole child process** | **{r['wall_s']:.1f}** | **{r['cpu_s']:.1f}** |\n",
        f"- peak RSS of the report process: **{peak_mib:,.0f} MiB** (target: under 2 GiB);"
        f" wall target under 60 s",
        f"- load average while it ran (1, 5, 15 min): {os.getloadavg()}",
        f"- report.html: {html_kib:,.0f} KiB; items per task: {r['tasks']};"
        f" ctc WER 95% CI [{100 * r['wer_ci']['low']:.3f}%, {100 * r['wer_ci']['high']:.3f}%]",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with RESULTS.open("a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
