"""Memory of a running job, per Ray process kind, every few seconds (PSS and private USS).

    .venv/bin/python benchmarks/mem_by_process.py CORPUS_DIR MODEL_DIR [--interval 6]

CORPUS_DIR holds audio files and manifest.jsonl (e.g. what bench_ctc_cpu.py built under
/tmp/audiobatch-bench/corpus-3000); MODEL_DIR a CTC checkpoint folder.

Read `anon` (RssAnon: the process's own heap) to judge a leak. USS is misleading for
Ray workers: the object store is shared memory, and its pages that only one process
has mapped count as that process's "private" USS, so a model actor's USS rises as it
touches more of the store (bounded by the store's size) while its heap stays flat.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import tempfile
import threading
import time

import psutil


def _kind(p: psutil.Process, me: int) -> str:
    if p.pid == me:
        return "driver"
    cmd = " ".join(p.cmdline())
    for k in ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor"):
        if k in cmd:
            return k
    return p.name()[:40]


def _rss_anon(pid: int) -> int:
    """Bytes of anonymous (heap) memory resident for `pid`, from /proc (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _sample(me: int) -> collections.Counter:
    acc: collections.Counter = collections.Counter()
    for p in psutil.process_iter():
        try:
            if p.pid == me or "ray" in " ".join(p.cmdline()):
                info = p.memory_full_info()
                acc[(_kind(p, me), "pss")] += info.pss
                acc[(_kind(p, me), "uss")] += info.uss
                acc[(_kind(p, me), "anon")] += _rss_anon(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return acc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("model")
    ap.add_argument("--interval", type=float, default=6.0)
    args = ap.parse_args()
    import ray

    from pipeline.runner import run_job
    from pipeline.spec import parse_spec

    out = os.path.join(tempfile.gettempdir(), "audiobatch-mem-out")
    shutil.rmtree(out, ignore_errors=True)
    ray.init(include_dashboard=False, logging_level="ERROR")
    spec = parse_spec(
        {
            "name": "mem",
            "input": {"uri": args.corpus, "manifest": os.path.join(args.corpus, "manifest.jsonl")},
            "tasks": [{"kind": "ctc", "model": args.model, "batch_size": 32}],
            "output": {"uri": out},
            "runtime": {"progress_interval_s": 3600},
        }
    )
    stop, me, t0 = threading.Event(), os.getpid(), time.monotonic()

    def watch() -> None:
        while not stop.wait(args.interval):
            acc = _sample(me)
            top = sorted({k for k, _ in acc}, key=lambda k: -acc[(k, "pss")])[:4]
            cells = ", ".join(
                f"{k}: pss {acc[(k, 'pss')] >> 20} / uss {acc[(k, 'uss')] >> 20} "
                f"/ anon {acc[(k, 'anon')] >> 20}"
                for k in top
            )
            total = sum(v for (_, m), v in acc.items() if m == "pss") >> 20
            print(f"t={time.monotonic() - t0:5.0f}s total pss {total} MiB | {cells}", flush=True)

    threading.Thread(target=watch, daemon=True).start()
    result = run_job(spec, out=lambda _: None, report=False)
    stop.set()
    print(f"{result.counters.items} items in {result.wall_s:.1f} s")


if __name__ == "__main__":
    main()
