"""CPU benchmark: what feeding a GPU costs the CPUs, with the model replaced by nothing.

    python benchmarks/bench_feed_cpu.py [--hours 3] [--no-write]

On a GPU node the CPUs read, decode, resample, move batches through Ray's object store,
score and write. This runs the whole pipeline (`run_job` on a local Ray: read, decode,
a model stage that costs nothing (benchmarks/null_stage.py, not a spec kind), score,
the checkpointed multi-table write) over two generated corpora:
- `flac16`: 16 kHz FLAC, 4-16 s items (LibriSpeech-like);
- `mixed`: mp3 / opus / m4a / wav at 8-48 kHz (resampled to 16 kHz),
and measures process-CPU seconds (the machine is shared: wall time means little here):
- of the whole process tree (driver, Ray's servers, every worker), by psutil;
- of each stage's own thread (decode, the null model, score), as the runner records it;
- of a plain loop decoding the same files with the same decoder, beside it.
A warm-up run starts Ray's workers first; then a small and a large run are measured and
the per-audio-hour figures are their difference over the difference in audio (so the
per-run fixed cost is reported apart). From the CPU per audio-hour it projects what a
16-core node feeds and sets it beside each H200 ceiling (docs/FACTS.md).
Targets: Ray's share (everything but decode itself) < 25% of the CPU; a 16-core node
>= 15,000x realtime on flac16. Appends its section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).parent
RESULTS = HERE / "RESULTS.md"
RATE = 16_000
TASK = "ctc"
CEILINGS = {  # one H200, raw model, docs/FACTS.md
    "wav2vec2-base CTC": 10_400,
    "wav2vec2-large CTC": 6_060,
    "wav2vec2-base frames": 10_460,
    "AST": 15_700,
    "Whisper large-v3 encoder": 4_590,
    "Whisper turbo greedy (256)": 3_510,
}
MIXED = [("mp3", 22_050), ("opus", 48_000), ("m4a", 44_100), ("wav", 8_000), ("mp3", 44_100),
         ("wav", 48_000), ("opus", 16_000), ("m4a", 22_050)]  # fmt: skip


def build_corpus(root: Path, kind: str, hours: float) -> Path:
    """Files of 4-16 s (24 distinct clips, copied) and a manifest, `hours` of audio."""
    from pipeline.testing.synth import encode, sentence, speechlike

    folder = root / f"{kind}-{hours:g}h"
    if (folder / "manifest.jsonl").exists():
        return folder
    rng = np.random.default_rng(7)
    clips = []
    for i in range(24):
        seconds = 4 + 12 * i / 23
        x = np.resize(speechlike(sentence(rng, 12, 30), RATE, 70 + i), int(seconds * RATE))
        fmt, rate = ("flac", RATE) if kind == "flac16" else MIXED[i % len(MIXED)]
        if rate != RATE:
            import soxr

            x = soxr.resample(x, RATE, rate, quality="HQ")
        clips.append((encode(x.astype(np.float32), rate, fmt), fmt, seconds))
    folder.mkdir(parents=True, exist_ok=True)
    rows, total, i = [], 0.0, 0
    while total < hours * 3600:
        data, fmt, seconds = clips[i % len(clips)]
        name = f"{i // 500:03d}/item{i:06d}.{fmt}"
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
        rows.append({"path": name, "text": "a b c"})
        total, i = total + seconds, i + 1
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def subset(folder: Path, n: int) -> Path:
    """A corpus of the first `n` items of `folder` (a manifest of its own, same files)."""
    small = folder.parent / f"{folder.name}-first{n}"
    if not (small / "manifest.jsonl").exists():
        small.mkdir(exist_ok=True)
        lines = (folder / "manifest.jsonl").read_text().splitlines()[:n]
        for line in lines:
            rel = json.loads(line)["path"]
            (small / rel).parent.mkdir(exist_ok=True)
            shutil.copyfile(folder / rel, small / rel)
        (small / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return small


def decode_loop(folder: Path) -> tuple[float, float]:
    """(audio seconds, process-CPU seconds) of a plain loop: read each file, decode it."""
    from pipeline.io.audio import decode_audio
    from pipeline.spec import DecodeSpec

    limits = DecodeSpec()
    paths = [json.loads(line)["path"] for line in (folder / "manifest.jsonl").open()]
    audio = 0.0
    t0 = time.process_time()
    for rel in paths:
        decoded = decode_audio((folder / rel).read_bytes(), target_rate=RATE, limits=limits)
        audio += len(decoded.samples) / RATE
    return audio, time.process_time() - t0


def tree_cpu() -> float:
    """CPU seconds (user + system) of this process and every live descendant."""
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


@dataclass
class Run:
    audio_s: float
    tree_cpu_s: float
    wall_s: float
    stage_cpu: dict[str, float]


def null_model_plan(spec, revisions=None):
    """The job's plan with its model stage swapped for `NullModelStage`."""
    from pipeline.plan import StageFactory, build_plan

    plan = build_plan(spec, revisions)
    stages = [
        replace(s, factory=StageFactory("null_stage", "NullModelStage", {"task": TASK}))
        if s.name == TASK
        else s
        for s in plan.stages
    ]
    return replace(plan, stages=stages)


def pipeline_run(folder: Path, out: Path) -> Run:
    import pipeline.runner as runner
    from pipeline.spec import parse_spec

    shutil.rmtree(out, ignore_errors=True)
    spec = parse_spec(
        {
            "name": "feed",
            "input": {"uri": str(folder), "manifest": str(folder / "manifest.jsonl")},
            # `model` is never loaded: the null stage replaces the task's stage. A commit as
            # its revision: the run resolves it without asking the hub (none is reachable).
            "tasks": [
                {
                    "kind": "ctc",
                    "model": "unused",
                    "revision": "0" * 40,
                    "num_cpus": 0.5,
                    "batch_size": 64,
                }
            ],
            "output": {"uri": str(out)},
            "runtime": {"read_batch_items": 64, "decode_batch_size": 32, "progress_interval_s": 30},
        }
    )
    real = runner.build_plan
    runner.build_plan = null_model_plan  # the benchmark's whole point: no model
    try:
        cpu0, t0 = tree_cpu(), time.perf_counter()
        result = runner.run_job(spec, out=lambda _line: None, report=False)
        wall, cpu = time.perf_counter() - t0, tree_cpu() - cpu0
    finally:
        runner.build_plan = real
    stages = {k: v.cpu_s for k, v in result.counters.stages.items()}
    return Run(result.counters.audio_s, cpu, wall, stages)


def measure(root: Path, kind: str, hours: float, small_n: int) -> dict:
    big = build_corpus(root, kind, hours)
    small = subset(big, small_n)
    pipeline_run(small, root / "out-warm")  # starts Ray's workers outside the figures
    a, b = pipeline_run(small, root / "out-small"), pipeline_run(big, root / "out-big")
    loop_audio, loop_cpu = decode_loop(big)
    hour = 3600 / (b.audio_s - a.audio_s)
    per_h = {k: (b.stage_cpu.get(k, 0) - a.stage_cpu.get(k, 0)) * hour for k in b.stage_cpu}
    total_h = (b.tree_cpu_s - a.tree_cpu_s) * hour
    realtime_per_core = 3600 / total_h
    return {
        "kind": kind,
        "audio_h": b.audio_s / 3600,
        "fixed_cpu_s": a.tree_cpu_s - a.audio_s * total_h / 3600,
        "total_h": total_h,
        "stages_h": per_h,
        "ray_share": 1 - per_h.get("decode", 0) / total_h,
        "per_core": realtime_per_core,
        "loop_per_core": loop_audio / loop_cpu,
        "node16": 16 * realtime_per_core,
        "wall_s": b.wall_s,
    }


def report(results: list[dict], machine: str) -> list[str]:
    lines = [
        f"## CPU cost of feeding a GPU (`bench_feed_cpu.py`) — {datetime.now(UTC):%Y-%m-%d} — {machine}",
        "",
        "The whole pipeline with a model stage that costs nothing; process-CPU seconds per "
        "audio-hour (large run minus small run, over their difference in audio), whole "
        "process tree and each stage's own thread; a plain decode loop over the same files.",
        "",
        "| corpus | audio h | CPU s / audio-h, all | decode | null model | score | rest: read, "
        "write, Ray | Ray's share | realtime per core, pipeline | realtime per CPU-s, decode "
        "loop | 16-core node projected | fixed CPU s per run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r["stages_h"]
        rest = r["total_h"] - sum(s.values())
        lines.append(
            f"| {r['kind']} | {r['audio_h']:.2f} | {r['total_h']:.2f} | {s.get('decode', 0):.2f} | "
            f"{s.get(TASK, 0):.2f} | {s.get('score', 0):.2f} | {rest:.2f} | "
            f"**{r['ray_share']:.0%}** | {r['per_core']:,.0f}x | {r['loop_per_core']:,.0f}x | "
            f"**{r['node16']:,.0f}x** | {r['fixed_cpu_s']:.1f} |"
        )
    lines += ["", "16-core node projected (all 16 cores feeding) vs one H200's raw ceiling:", ""]
    lines += ["| model | H200 ceiling | " + " | ".join(r["kind"] for r in results) + " |"]
    lines += ["|---|---:|" + "---:|" * len(results)]
    for model, ceiling in CEILINGS.items():
        cells = " | ".join(f"{r['node16'] / ceiling:.1f}x the ceiling" for r in results)
        lines.append(f"| {model} | {ceiling:,}x | {cells} |")
    flac = next((r for r in results if r["kind"] == "flac16"), None)
    if flac:
        lines += [
            "",
            f"- targets: Ray's share < 25% (flac16 {flac['ray_share']:.0%}); 16-core node >= "
            f"15,000x on flac16 (projected {flac['node16']:,.0f}x)",
        ]
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=3.0, help="audio in the large flac16 run")
    ap.add_argument("--mixed-hours", type=float, default=1.0, help="audio in the mixed run")
    ap.add_argument("--small", type=int, default=48, help="items in the small run")
    ap.add_argument("--corpora", default="flac16,mixed")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "audiobatch-feed"))
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    args = ap.parse_args(argv)
    # Workers import the null stage by module name.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p
    )
    sys.path.insert(0, str(HERE))
    import ray

    # A Ray of its own ("local"): never join another cluster running on the machine.
    ray.init(address="local", include_dashboard=False, logging_level="WARNING")
    root = Path(args.workdir)
    hours = {"flac16": args.hours, "mixed": args.mixed_hours}
    try:
        results = [measure(root, k, hours[k], args.small) for k in args.corpora.split(",")]
    finally:
        ray.shutdown()
    from pipeline.testing.machine import machine_line

    lines = report(results, machine_line())
    print("\n".join(lines))
    if not args.no_write:
        with RESULTS.open("a") as f:
            f.write("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
