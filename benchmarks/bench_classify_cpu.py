"""CPU benchmark: ClassifyStage vs `transformers.pipeline("audio-classification")`, same items.

    .venv/bin/python benchmarks/bench_classify_cpu.py [--items 80] [--rounds 2] [--no-write]

For each tiny random-init model (AST with its real 1024-frame input, and a wav2vec2
sequence classifier with the real conv stack; `pipeline/testing/tiny_classifiers.py`), in
one run on the same speech-like items (`pipeline/testing/synth.py`, 16 kHz, 0.5-9 s):
1. the reference pipeline one item at a time (its default, batch_size 1);
2. the reference pipeline with batch_size=16 (it pads a batch; AST inputs are fixed-size);
3. ClassifyStage called directly on Arrow batches of 64 rows (no Ray), as an actor would,
   with its default CPU micro-batch budget.
Model loading is outside every clock; both sides use all cores through torch. The three
run interleaved `--rounds` times and each keeps its best time (the machine is shared). Also checks
that the stage's top label equals the unbatched pipeline's on every item. Appends what it
saw to benchmarks/RESULTS.md with the machine named (unless --no-write).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("RESULTS.md")
RATE = 16_000
ROWS_PER_CALL = 64


def corpus(n: int, seed: int = 5) -> list[np.ndarray]:
    from pipeline.testing.synth import sentence, speechlike

    rng = np.random.default_rng(seed)
    return [speechlike(sentence(rng, 1, 14), RATE, seed * 1000 + i) for i in range(n)]


def build_models(root: Path) -> dict[str, str]:
    from pipeline.testing.tiny_classifiers import build_tiny_ast, build_tiny_sequence_classifier

    return {
        "AST (tiny, 1024 frames)": build_tiny_ast(str(root / "ast"), seed=11),
        "wav2vec2 seq. classifier (tiny)": build_tiny_sequence_classifier(
            str(root / "seq"), seed=11
        ),
    }


def arrow_batches(audio: list[np.ndarray]):
    import pyarrow as pa

    from pipeline.columns import AUDIO, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, SAMPLE_RATE

    for i in range(0, len(audio), ROWS_PER_CALL):
        part = audio[i : i + ROWS_PER_CALL]
        n = len(part)
        yield pa.table(
            {
                AUDIO: pa.array(part, pa.list_(pa.float32())),
                SAMPLE_RATE: pa.array([RATE] * n, pa.int32()),
                ERROR_STAGE: pa.nulls(n, pa.string()),
                ERROR_CODE: pa.nulls(n, pa.string()),
                ERROR_MESSAGE: pa.nulls(n, pa.string()),
            }
        )


def timed(fn):
    """(wall s, CPU s of this process, result): CPU time is what other load cannot inflate."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def measure(path: str, audio: list[np.ndarray], rounds: int) -> dict:
    from transformers import pipeline

    from pipeline.kinds.classify import ClassifyTaskSpec
    from pipeline.spec import StorageOptions
    from pipeline.stages.classify import ClassifyStage

    reference = pipeline("audio-classification", model=path, device="cpu")
    reference(audio[0])  # warm-up outside the clocks, for both sides
    stage = ClassifyStage(ClassifyTaskSpec(model=path, top_k=5), StorageOptions()).load()
    batches = list(arrow_batches(audio))
    stage(batches[0].slice(0, 2))

    runs = {
        "single": lambda: [reference(a, top_k=5) for a in audio],
        "batched": lambda: list(reference(audio, top_k=5, batch_size=16)),
        "ours": lambda: [stage(b) for b in batches],
    }
    best: dict = {}
    outputs: dict = {}
    for _ in range(rounds):  # interleaved, best of `rounds`: other work on the machine
        for name, run in runs.items():
            wall, cpu, outputs[name] = timed(run)
            best[name] = min(best.get(name, wall), wall)
            best[name + "_cpu"] = min(best.get(name + "_cpu", cpu), cpu)
    ours = [labels for t in outputs["ours"] for labels in t.column("classify__labels").to_pylist()]
    agree = sum(
        o[0]["label"] == s[0]["label"] for o, s in zip(ours, outputs["single"], strict=True)
    )
    return {**best, "agree": agree}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repeats; best is kept")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
    import psutil
    import torch

    audio = corpus(args.items)
    audio_s = sum(len(a) for a in audio) / RATE
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp))
        results = {name: measure(path, audio, args.rounds) for name, path in models.items()}

    lines = [
        f"## CPU, tiny audio classifiers, stage vs transformers pipeline — {datetime.now(UTC):%Y-%m-%d} — "
        f"{platform.node()}: {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU, torch threads {torch.get_num_threads()}, "
        f"load average at start {load:.1f}",
        "",
        f"{args.items} speech-like items, {audio_s:.0f} s of audio (0.5-9 s each), 16 kHz; "
        f"best of {args.rounds} interleaved rounds.",
        "",
        "| model | clock | pipeline, batch 1: realtime x | pipeline, batch 16 | ClassifyStage | stage / batch 1 | stage / batch 16 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        for clock, k in (("wall", ""), ("process CPU", "_cpu")):
            single, batched, ours = r["single" + k], r["batched" + k], r["ours" + k]
            lines.append(
                f"| {name} | {clock} | {audio_s / single:.0f} | {audio_s / batched:.0f} | "
                f"{audio_s / ours:.0f} | **{single / ours:.2f}x** | **{batched / ours:.2f}x** |"
            )
    agree = ", ".join(f"{name} {r['agree']}/{args.items}" for name, r in results.items())
    lines += [
        "",
        f"- top-1 label of the stage = the unbatched pipeline's: {agree}",
        f"- load average at the end: {os.getloadavg()[0]:.1f} (other sessions share this machine; "
        "the process-CPU rows are the load-independent comparison)",
        "",
    ]
    print("\n".join(lines))
    if not args.no_write:
        with RESULTS.open("a") as f:
            f.write("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
