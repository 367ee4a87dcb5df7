"""Nightly re-run planning: a files corpus of N done items plus M new ones, local disk.

    .venv/bin/python benchmarks/bench_nightly_planning.py [--done 1000000] [--new 1000]
        [--block 32] [--dir /dev/shm/nightly-bench] [--baseline REV] [--no-run] [--no-write]

1. Builds the corpus: N empty `.wav` files (they are done: never opened) and M real
   audio files (speech-like, the demo's builder), under one prefix.
2. Builds the output an earlier night would have left for the N done items, the way the
   sink writes it: one completion file and one committed checkpoint file per write of
   `--block` items (the reader's default block is 32 items).
3. Planning, in a fresh process each (peak RSS of that process): `runner/night.py`
   `plan_night`, exactly what `run_job` does between its lease and Ray, never merging —
   a) nothing new, records as the writes left them (one file per write); with
      `--baseline REV` also the same planning by the code of REV (`git archive`), over
      the same files, side by side;
   b) nothing new, after the run-end merge (`io/completion.py` `merge_small`, what a
      successful run does before its runs row; timed and measured in its own process);
   c) with the M new files.
4. The no-op night end to end (`run_job`, in a fresh process) over a copy of the records
   as written (what a run that died before its end leaves): its planner merges them
   first; peak RSS is the driver's (with `--baseline`, also by that code, on another
   copy). It must not import Ray.
5. Unless --no-run: the M new items through `run_job` with a tiny wav2vec2 CTC model on a
   local Ray (started by the run, so it is inside the wall time).
Appends what it saw to benchmarks/RESULTS.md (unless --no-write), with the machine named.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
ROOT = Path(__file__).resolve().parents[1]


def build_corpus(corpus: Path, done: int) -> list[str]:
    """N empty wav files in folders of 10,000; their absolute paths.

    A tight loop of `os.open` on string paths (no `Path`, no exists check): on tmpfs
    (`--dir /dev/shm/...`) 1M files take seconds; files already there are kept."""
    paths = [f"{corpus}/old{i // 10_000:04d}/utt{i:07d}.wav" for i in range(done)]
    flags = os.O_CREAT | os.O_WRONLY
    for start in range(0, done, 10_000):
        os.makedirs(os.path.dirname(paths[start]), exist_ok=True)
        for path in paths[start : start + 10_000]:
            os.close(os.open(path, flags, 0o644))
    return paths


def build_output(out: Path, paths: list[str], block: int, tasks: list[str]) -> None:
    """What earlier nights' writes left for `paths`: completion + committed checkpoint files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.io.completion import COMPLETION, COMPLETION_DIR
    from pipeline.io.units import item_id

    versions = [str(os.stat(p).st_mtime_ns) for p in paths]
    (out / COMPLETION_DIR).mkdir(parents=True, exist_ok=True)
    (out / "_checkpoint").mkdir(exist_ok=True)
    for w, start in enumerate(range(0, len(paths), block)):
        ids = [item_id(p, "") for p in paths[start : start + block]]
        n = len(ids) * len(tasks)
        records = {
            "item_id": ids * len(tasks),
            "task": [t for t in tasks for _ in ids],
            "outcome": ["ok"] * n,
            "transient": [False] * n,
            "shard_level": [False] * n,
            "source_uri": [p for _ in tasks for p in paths[start : start + block]],
            "input_hash": ["bench"] * n,
            "run_id": ["20261201T020000Z-bench0"] * n,
            "source_size": [0] * n,  # the files are empty; their mtime is their version
            "source_version": [v for _ in tasks for v in versions[start : start + block]],
        }
        base = f"w{w:07d}"
        pq.write_table(
            pa.table(records, schema=COMPLETION), out / COMPLETION_DIR / f"{base}.parquet"
        )
        pq.write_table(pa.table({"item_id": ids}), out / "_checkpoint" / f"{base}.parquet")


def spec_dict(corpus: Path, out: Path, model: str, tasks: list[str]) -> dict:
    return {
        "name": "nightly-bench",
        "input": {"uri": str(corpus), "format": "files"},
        "tasks": [
            {"kind": "ctc", "name": t, "model": model, "num_cpus": 0.5, "batch_size": 32}
            for t in tasks
        ],
        "output": {"uri": str(out)},
        "runtime": {"progress_interval_s": 30},
    }


# The process's own peak RSS (VmHWM): ru_maxrss would carry over the forked copy of this
# (bigger) process across exec, flooring every figure at this process's size.
_PEAK_CODE = """
def _peak():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
"""

_PLAN = """
import json, sys, time
{PEAK}
t = time.perf_counter(); c0 = time.process_time()
from pipeline.spec import parse_spec
from pipeline.io.completion import RetryPolicy
from pipeline.io.storage import arrow_filesystem
from pipeline.runner.night import plan_night
spec = parse_spec(json.loads(sys.argv[1]))
imports_s = time.perf_counter() - t
t = time.perf_counter(); c0 = time.process_time()
fs, root = arrow_filesystem(spec.output.uri)
names = [t.task_name for t in spec.tasks]
# What run_job does between taking the lease and starting Ray; never compacts here.
inputs, done = plan_night(spec, names, RetryPolicy(), fs, root, "bench", compact_after=10**9)
print(json.dumps({
    "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c0, "imports_s": imports_s,
    "done": len(done.done_all), "units": len(inputs.units), "todo": inputs.total_items or 0,
    "peak_rss_mib": _peak(),
    "ray_imported": "ray" in sys.modules,
}))
"""

_NOOP = """
import json, sys, time
{PEAK}
t = time.perf_counter()
from pipeline.runner import run_job
from pipeline.spec import parse_spec
r = run_job(parse_spec(json.loads(sys.argv[1])), out=lambda _: None, report=False)
print(json.dumps({
    "wall_s": time.perf_counter() - t, "items": r.counters.items, "ray_imported": "ray" in sys.modules,
    "peak_rss_mib": _peak(),
}))
"""


_MERGE = """
import json, sys, time
{PEAK}
from pipeline.io.completion import CHECKPOINT_DIR, merge_small
from pipeline.io.storage import arrow_filesystem
from pipeline.spec import parse_spec
spec = parse_spec(json.loads(sys.argv[1]))
fs, root = arrow_filesystem(spec.output.uri)
t = time.perf_counter(); c0 = time.process_time()
merged = merge_small(fs, root, CHECKPOINT_DIR, "bench")
print(json.dumps({
    "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c0, "merged": merged,
    "peak_rss_mib": _peak(),
}))
"""


_PLAN, _NOOP, _MERGE = (c.replace("{PEAK}", _PEAK_CODE) for c in (_PLAN, _NOOP, _MERGE))


def baseline_tree(rev: str, where: Path) -> Path:
    """The code of `rev` (`pipeline/`, `schemas/`) extracted under `where`, for a side by side."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "pipeline", "schemas"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def _fresh(code: str, spec: dict, tree: Path = ROOT) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(  # in `tree`: `-c` puts the working directory first on sys.path
        [sys.executable, "-c", code, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def plan_once(spec: dict, tree: Path = ROOT) -> dict:
    """Planning as `run_job` does it, in a fresh process (its peak RSS is planning's)."""
    return _fresh(_PLAN, spec, tree)


def noop_night(spec: dict, tree: Path = ROOT) -> dict:
    """The whole no-op run (`run_job`) in a fresh process: wall, peak RSS, Ray imported."""
    got = _fresh(_NOOP, spec, tree)
    if got["items"]:
        raise SystemExit(f"the no-op night processed {got['items']} items")
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--done", type=int, default=1_000_000)
    ap.add_argument("--new", type=int, default=1_000)
    ap.add_argument("--block", type=int, default=32)
    # tmpfs: creating 1M empty files there takes ~1 min (on the VM's disk, >20 min under load)
    ap.add_argument("--dir", default="/dev/shm/nightly-bench")
    ap.add_argument("--baseline", help="also plan with the code of this git revision")
    ap.add_argument("--no-run", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from pipeline.testing.corpus import build_files_corpus
    from pipeline.testing.tiny_ctc import build_tiny_ctc

    base = Path(args.dir)
    corpus, out = base / f"corpus-{args.done}", base / f"out-{args.done}-{args.block}"
    tasks = ["ctc"]
    t = time.perf_counter()
    paths = build_corpus(corpus, args.done)  # the empty done files are kept between runs
    new = corpus / "new"
    shutil.rmtree(new, ignore_errors=True)  # the night starts with nothing new
    shutil.rmtree(out, ignore_errors=True)
    build_output(out, paths, args.block, tasks)
    print(f"built {args.done:,} done items in {time.perf_counter() - t:.0f} s", flush=True)
    model = base / "model"
    if not (model / "config.json").exists():
        build_tiny_ctc(str(model), arch="wav2vec2", seed=3)
    spec = spec_dict(corpus, out, str(model), tasks)
    dead = base / f"out-{args.done}-{args.block}-as-written"  # what a dead run leaves
    shutil.rmtree(dead, ignore_errors=True)
    shutil.copytree(out, dead)
    loads = [os.getloadavg()[0]]

    plans = {"written": plan_once(spec)}
    print("planning, nothing new, records as written:", plans["written"], flush=True)
    if args.baseline:
        tree = baseline_tree(args.baseline, base / "baseline")
        plans["baseline"] = plan_once(spec, tree)
        print(f"same, code of {args.baseline}:", plans["baseline"], flush=True)
        shutil.rmtree(tree)
    merge = _fresh(_MERGE, spec)
    print("run-end merge:", merge, flush=True)
    plans["merged"] = plan_once(spec)
    print("planning, nothing new, after the run-end merge:", plans["merged"], flush=True)
    build_files_corpus(str(new), n_items=args.new, seed=12, broken=False, manifest=None)
    plans["grown"] = plan_once(spec)
    print("planning, with new items:", plans["grown"], flush=True)
    shutil.rmtree(new)
    loads.append(os.getloadavg()[0])
    noops = {}
    if args.baseline:  # first, on a copy: the night merges the records it finds
        shutil.copytree(dead, f"{dead}-baseline")
        tree = baseline_tree(args.baseline, base / "baseline")
        noops["baseline"] = noop_night(
            spec_dict(corpus, f"{dead}-baseline", str(model), tasks), tree
        )
        print(f"same, code of {args.baseline}:", noops["baseline"], flush=True)
        shutil.rmtree(tree)
        shutil.rmtree(f"{dead}-baseline")
    noops["now"] = noop_night(spec_dict(corpus, dead, str(model), tasks))
    print("no-op night over the records as written:", noops["now"], flush=True)
    shutil.rmtree(dead)
    loads.append(os.getloadavg()[0])
    run = None
    if not args.no_run:
        from pipeline.runner import run_job
        from pipeline.spec import parse_spec

        build_files_corpus(str(new), n_items=args.new, seed=12, broken=False, manifest=None)
        t = time.perf_counter()
        result = run_job(parse_spec(spec), out=print)
        run = {"wall_s": time.perf_counter() - t, "items": result.counters.items}
        print("run of the new items:", run, flush=True)
    if not args.no_write:
        write_results(args, plans, merge, noops, run, loads)


def write_results(args, plans, merge, noops, run, loads) -> None:
    from pipeline.testing.machine import machine_line

    when = datetime.now(UTC).strftime("%Y-%m-%d")
    files = -(-args.done // args.block)
    lines = [
        "",
        f"## Nightly re-run planning, files format, local — {when} — {machine_line()} "
        "(wall times include others' load, CPU seconds less so)",
        "",
        f"{args.done:,} done items (completion records in writes of {args.block} items: "
        f"{files:,} files), {args.new:,} new ones, one CTC task "
        "(`benchmarks/bench_nightly_planning.py`). Targets: planning <= 60 s, <= 1 GiB. "
        f"Load average (1 min) at the start, after planning, after the no-op night: "
        + ", ".join(f"{x:.1f}" for x in loads)
        + ".",
        "",
        "| case | planning wall s | planning CPU s | imports s (before) | peak RSS MiB | units | items to do |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "baseline": f"nothing new, records as written ({files:,} files), code of {args.baseline}",
        "written": f"nothing new, records as written ({files:,} files)",
        "merged": "nothing new, after the run-end merge (1 file)",
        "grown": f"{args.new:,} new (after the run-end merge)",
    }
    for key, name in names.items():
        if key in plans:
            p = plans[key]
            lines.append(
                f"| {name} | {p['wall_s']:.1f} | {p['cpu_s']:.1f} | {p['imports_s']:.1f} | "
                f"{p['peak_rss_mib']:.0f} | {p['units']:,} | {p['todo']:,} |"
            )
    lines += [
        "",
        f"- The run-end merge (`merge_small`, in a fresh process) of the {merge['merged']:,} "
        f"files: {merge['wall_s']:.1f} s wall, {merge['cpu_s']:.1f} s CPU, "
        f"{merge['peak_rss_mib']:.0f} MiB peak RSS.",
    ]
    for key, noop in noops.items():
        code = f"code of {args.baseline}" if key == "baseline" else "this code"
        lines.append(
            f"- The no-op night end to end over a copy of the records as written, {code} "
            f"(`run_job` in a fresh process: lease, task identities, planning and merging the "
            f"{files:,} files, runs row): {noop['wall_s']:.1f} s wall, "
            f"{noop['peak_rss_mib']:.0f} MiB peak RSS; Ray imported: "
            f"{'yes' if noop['ray_imported'] else 'no'} (so not started either)."
        )
    if run:
        lines.append(
            f"- The {run['items']:,} new items through `run_job` (tiny wav2vec2 CTC, local Ray "
            f"started by the run): {run['wall_s']:.1f} s wall."
        )
    with RESULTS.open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
