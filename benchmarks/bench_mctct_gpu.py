"""GPU benchmark: M-CTC-T of the published size through our CTC stage vs its raw forward.

    .venv/bin/python benchmarks/bench_mctct_gpu.py [--items 96] [--batch-seconds 320]
    .venv/bin/python benchmarks/bench_mctct_gpu.py --device cpu --tiny   # a smoke test

1. Writes a random-init checkpoint shaped like `speechbrain/m-ctc-t-large` (1536 wide,
   36 layers, 4 heads x 384, feed-forward 6144, 920 relative positions, 8065
   characters; `MctctConfig`'s defaults, taken from transformers 4.57.6's
   `MCTCTConfig`) in bf16, and loads it through `load_ctc` as a hub id would be.
2. Speech-like items of 2-25 s at 16 kHz (seeded), as one Arrow batch.
3. Times, on the same items and the same length-sorted micro-batches, side by side:
   - `stage`: `CtcStage(batch)` end to end (MFSC features on the device, micro-
     batching, forward, argmax, decoding, word timestamps);
   - `forward`: the network alone on features computed beforehand (the ceiling);
   - `features`: the MFSC front end alone.
   Each is run `--repeats` times after a warm-up; the best run counts.
Prints realtime factors (audio seconds / wall seconds) and their ratio, and appends
them to benchmarks/RESULTS.md with the machine named (not for `--tiny` runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import suite_rows  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")


def make_items(n: int, seed: int, shortest: float, longest: float):
    import numpy as np

    from pipeline.testing.synth import sentences, speechlike

    rng = np.random.default_rng(seed)
    items = []
    for i, text in enumerate(sentences(n, seed)):
        x = speechlike(text, 16_000, seed + i)
        target = int(rng.uniform(shortest, longest) * 16_000)
        items.append(np.resize(x, target).astype(np.float32))  # repeat or cut to length
    return items


def as_batch(items):
    import pyarrow as pa

    from pipeline.columns import AUDIO, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, SAMPLE_RATE

    none = pa.nulls(len(items), pa.string())
    return pa.table(
        {
            AUDIO: pa.array([x.tolist() for x in items], pa.list_(pa.float32())),
            SAMPLE_RATE: pa.array([16_000] * len(items), pa.int32()),
            ERROR_STAGE: none,
            ERROR_CODE: none,
            ERROR_MESSAGE: none,
        }
    )


def best_of(repeats: int, run, sync) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="tiny widths (a smoke test)")
    ap.add_argument("--items", type=int, default=96)
    ap.add_argument("--shortest", type=float, default=2.0, help="seconds")
    ap.add_argument("--longest", type=float, default=25.0, help="seconds")
    ap.add_argument("--batch-seconds", type=float, default=320.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "audiobatch-mctct"))
    args = ap.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "bench_mctct_gpu: no CUDA device is visible (torch.cuda.is_available() is False). "
            "Run it on a GPU machine, or smoke-test it here with --device cpu --tiny."
        )
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from pipeline.kinds.ctc import CtcTaskSpec
    from pipeline.models.ctc_model import greedy_frames
    from pipeline.spec import StorageOptions
    from pipeline.stages.batching import micro_batches
    from pipeline.stages.ctc import CtcStage
    from pipeline.testing.tiny_mctct import CHARS, build_mctct

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    size = "tiny" if args.tiny else "large"
    folder = Path(args.workdir) / f"mctct-{size}-{str(dtype).removeprefix('torch.')}"
    if not (folder / "model.safetensors").exists():
        t0 = time.perf_counter()
        # The published vocabulary has 8065 entries: 5 special tokens and 8060 characters.
        chars = CHARS if args.tiny else "".join(chr(0x4E00 + i) for i in range(8060))
        config = None if args.tiny else {}
        build_mctct(
            str(folder), seed=0, chars=chars, config=config, dtype=dtype, device=args.device
        )
        print(f"built {folder} in {time.perf_counter() - t0:.0f} s")
    spec = CtcTaskSpec(
        model=str(folder),
        device=args.device,
        dtype="bfloat16" if dtype == torch.bfloat16 else "float32",
        batch_seconds=args.batch_seconds,
    )
    t0 = time.perf_counter()
    stage = CtcStage(spec, StorageOptions()).load()
    load_s = time.perf_counter() - t0
    model = stage.model
    params = sum(p.numel() for p in model.model.parameters())
    items = make_items(args.items, seed=3, shortest=args.shortest, longest=args.longest)
    audio_s = sum(len(x) for x in items) / 16_000
    table = as_batch(items)
    groups = [
        [items[i] for i in group]
        for group in micro_batches([len(x) for x in items], int(args.batch_seconds * 16_000))
    ]
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    features = [model.features(group) for group in groups]
    autocast = torch.autocast("cuda", dtype=dtype, enabled=args.device == "cuda")

    def forward_only() -> None:
        with torch.inference_mode(), autocast:
            for feats, lengths in features:
                model.model(feats.to(dtype), lengths)

    def forward_and_argmax() -> None:
        with torch.inference_mode(), autocast:
            for feats, lengths in features:
                logits, frames = model.model(feats.to(dtype), lengths)
                greedy_frames(logits, frames.tolist())

    def features_only() -> None:
        for group in groups:
            model.features(group)

    out = stage(as_batch(items[:2]))  # warm-up: CUDA context, kernels, allocator
    forward_only()
    stage_s = best_of(args.repeats, lambda: stage(table), sync)
    forward_s = best_of(args.repeats, forward_only, sync)
    argmax_s = best_of(args.repeats, forward_and_argmax, sync)
    features_s = best_of(args.repeats, features_only, sync)
    out = stage(table)
    errors = len(items) - out.column("ctc__error_code").null_count
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")

    if args.device == "cuda":
        machine = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    else:
        machine = f"{os.cpu_count()} CPUs, no GPU, torch {torch.__version__}"
    rows = [
        ("CtcStage end to end (features, forward, decode, word timestamps)", stage_s),
        ("network forward only (features precomputed)", forward_s),
        ("network forward + argmax/probabilities", argmax_s),
        ("MFSC features only (on the device)", features_s),
    ]
    lines = [
        f"## M-CTC-T {size} ({params:,} parameters), {str(dtype).removeprefix('torch.')}, "
        f"{args.device} — {datetime.now(UTC):%Y-%m-%d} — {platform.node()}: {machine}",
        "",
        f"{len(items)} items, {audio_s:.0f} s of audio ({args.shortest:g}-{args.longest:g} s each), "
        f"{len(groups)} micro-batches of <= {args.batch_seconds:g} padded s; best of {args.repeats}; "
        f"model load {load_s:.1f} s; peak GPU memory {peak:.1f} GiB; row errors {errors}.",
        "",
        "| what | wall s | realtime x |",
        "|---|---:|---:|",
        *(f"| {name} | {s:.3f} | {audio_s / s:.0f} |" for name, s in rows),
        "",
        f"- stage / raw forward realtime ratio: **{forward_s / stage_s:.2f}** "
        f"(1.0 would mean the stage adds nothing to the forward pass)",
        "",
    ]
    print("\n".join(lines))
    suite_rows.emit(
        f"M-CTC-T {size}",
        f"{args.batch_seconds:g} s",
        audio_s / stage_s,
        audio_s / forward_s,
        peak if args.device == "cuda" else None,
        f"{len(items)} items of {args.shortest:g}-{args.longest:g} s; ceiling: forward on "
        "precomputed features",
    )
    if not args.tiny:
        with RESULTS.open("a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
