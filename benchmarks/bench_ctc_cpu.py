"""CPU benchmark: audiobatch end to end vs a plain single-process loop, same items, one run.

    .venv/bin/python benchmarks/bench_ctc_cpu.py [--items 300] [--scale 10]

1. Builds a corpus (speech-like audio, mixed formats and rates) and a tiny random-init
   wav2vec2 CTC model (the demo's architecture).
2. Plain loop: for each file, read, decode (the same decoder), feature-extract, forward
   the model one item at a time, greedy-decode; write one Parquet file at the end.
3. audiobatch: the same items through `run_job` on a local Ray with all CPUs (Ray started
   before the clock; model loading inside the clock, as in the loop).
4. Peak memory (sum of PSS over the driver and every Ray process, sampled every 0.2 s)
   for N and scale*N items: it must not grow with the corpus.
Appends what it saw to benchmarks/RESULTS.md, with the machine named.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

RESULTS = Path(__file__).with_name("RESULTS.md")


def build(root: Path, n: int) -> tuple[Path, Path]:
    from pipeline.testing.corpus import build_files_corpus
    from pipeline.testing.tiny_ctc import build_tiny_ctc

    corpus = root / f"corpus-{n}"
    if not (corpus / "manifest.jsonl").exists():
        build_files_corpus(str(corpus), n_items=n, seed=11, broken=False, manifest="jsonl")
    model = root / "model"
    if not (model / "config.json").exists():
        build_tiny_ctc(str(model), arch="wav2vec2", seed=11)
    return corpus, model


def plain_loop(corpus: Path, model_dir: Path, out: Path) -> tuple[float, float]:
    """The hand-written baseline. Returns (wall seconds, audio seconds)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForCTC, AutoProcessor

    from pipeline.io.audio import decode_audio
    from pipeline.spec import DecodeSpec

    t0 = time.perf_counter()
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForCTC.from_pretrained(model_dir).eval()
    rows, audio_s = [], 0.0
    for line in (corpus / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        audio = decode_audio(
            (corpus / entry["path"]).read_bytes(), target_rate=16000, limits=DecodeSpec()
        )
        audio_s += audio.duration_s
        inputs = processor(audio.samples, sampling_rate=16000, return_tensors="pt")
        with torch.inference_mode():
            ids = model(**inputs).logits.argmax(-1)[0]
        rows.append({"path": entry["path"], "text": processor.decode(ids)})
    pq.write_table(pa.Table.from_pylist(rows), out)
    return time.perf_counter() - t0, audio_s


def pipeline_run(
    corpus: Path, model_dir: Path, out: Path, threads: int | None
) -> tuple[float, float, int]:
    from pipeline.runner import run_job
    from pipeline.spec import parse_spec

    spec = parse_spec(
        {
            "name": "bench",
            "input": {"uri": str(corpus), "manifest": str(corpus / "manifest.jsonl")},
            "tasks": [
                {"kind": "ctc", "model": str(model_dir), "batch_size": 32, "word_timestamps": True}
            ],
            "output": {"uri": str(out)},
            "runtime": {"progress_interval_s": 3600},
        }
    )
    t0 = time.perf_counter()
    result = run_job(spec, out=lambda _: None, report=False)
    return time.perf_counter() - t0, result.counters.audio_s, result.counters.items


class PeakRss:
    """Peak of the summed PSS of this process and every Ray process on the machine.

    PSS, not RSS: Ray's object store is shared memory mapped by every worker, and RSS
    would count those pages once per process."""

    def __init__(self):
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def _run(self):
        me = os.getpid()
        while not self._stop.wait(0.2):
            total = 0
            for p in psutil.process_iter(["pid", "cmdline"]):
                try:
                    cmd = " ".join(p.info["cmdline"] or [])
                    if p.info["pid"] == me or "ray" in cmd:
                        total += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.peak = max(self.peak, total)
            self.samples.append((time.monotonic(), total))

    def halves(self) -> tuple[int, int]:
        """Peak in the first and in the second half of the run: growth would show here."""
        if len(self.samples) < 2:
            return self.peak, self.peak
        mid = (self.samples[0][0] + self.samples[-1][0]) / 2
        first = max(v for t, v in self.samples if t <= mid)
        second = max(v for t, v in self.samples if t > mid)
        return first, second


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="cpu_threads of the CTC actor")
    ap.add_argument("--actors", type=int, default=1, help="CTC actor pool size")
    ap.add_argument("--actor-cpus", type=float, default=1.0, help="num_cpus of each CTC actor")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "audiobatch-bench"))
    args = ap.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    import shutil

    import ray

    corpus, model = build(root, args.items)
    big, _ = build(root, args.items * args.scale)
    ray.init(include_dashboard=False, logging_level="WARNING")
    shutil.rmtree(root / "out-small", ignore_errors=True)
    shutil.rmtree(root / "out-big", ignore_errors=True)

    loop_wall, loop_audio = plain_loop(corpus, model, root / "loop.parquet")
    with PeakRss() as mem_small:
        pipe_wall, pipe_audio, items = pipeline_run(corpus, model, root / "out-small", args)
    with PeakRss() as mem_big:
        big_wall, big_audio, big_items = pipeline_run(big, model, root / "out-big", args)

    lines = [
        f"## CPU, tiny wav2vec2 CTC, actors={args.actors} x {args.actor_cpus} CPU, cpu_threads={args.threads} — {datetime.now(UTC):%Y-%m-%d} — {platform.node()}: "
        f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU",
        "",
        "| run | items | audio s | wall s | realtime x |",
        "|---|---:|---:|---:|---:|",
        f"| plain single-process loop | {args.items} | {loop_audio:.0f} | {loop_wall:.1f} | {loop_audio / loop_wall:.0f} |",
        f"| audiobatch run_job | {items} | {pipe_audio:.0f} | {pipe_wall:.1f} | {pipe_audio / pipe_wall:.0f} |",
        f"| audiobatch run_job, {args.scale}x items | {big_items} | {big_audio:.0f} | {big_wall:.1f} | {big_audio / big_wall:.0f} |",
        "",
        f"- speed ratio audiobatch / plain loop (same {args.items} items): **{loop_wall / pipe_wall:.2f}x**; "
        f"at {args.scale}x items: {(big_audio / big_wall) / (loop_audio / loop_wall):.2f}x the loop's realtime factor",
        f"- peak PSS (driver + all Ray processes): {mem_small.peak / 2**20:.0f} MiB at {items} items, "
        f"{mem_big.peak / 2**20:.0f} MiB at {big_items} items (ratio {mem_big.peak / max(mem_small.peak, 1):.2f}); "
        f"within the {big_items}-item run, peak in its first half {mem_big.halves()[0] / 2**20:.0f} MiB, "
        f"in its second half {mem_big.halves()[1] / 2**20:.0f} MiB",
        "",
    ]
    print("\n".join(lines))
    with RESULTS.open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
