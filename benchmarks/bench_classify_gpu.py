"""GPU benchmark: ClassifyStage end to end with a real-size AST vs the raw-model ceiling.

    python benchmarks/bench_classify_gpu.py [--items 2048] [--batch-seconds 1311]
    .venv/bin/python benchmarks/bench_classify_gpu.py --device cpu --tiny   # smoke run

A random-init ASTForAudioClassification with the configuration of
MIT/ast-finetuned-audioset-10-10-0.4593 (12 layers, hidden 768, 527 labels, multi-label;
nothing is downloaded: speed depends on shapes, not weights) is saved with its
ASTFeatureExtractor and loaded through the stage's own path, in bf16 on CUDA. In one run:
1. raw ceiling: the bare model on ready-made features already on the device, batch 128,
   median of timed repeats (docs/FACTS.md measured 15,700x realtime on one H200 this way);
2. audiobatch: `ClassifyStage` called on Arrow batches of 10.24 s items (as a Ray actor
   gets them), timing everything from Arrow rows to output columns: Arrow -> NumPy, fbank
   features on the device, forward, sigmoid, top-k, Arrow columns.
Prints both and their ratio (goal: >= 75% of the ceiling), appends a section to
benchmarks/RESULTS.md (or `--results`; on the GPU machine write it under $OUT).
Without CUDA it exits with a message unless `--device cpu`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import suite_rows  # noqa: E402

RATE = 16_000
ITEM_S = 10.24
CEILING_FACTS = 15_700  # docs/FACTS.md, one H200, bf16, batch 128, features on the device
AUDIOSET = {  # config of MIT/ast-finetuned-audioset-10-10-0.4593 (labels renamed)
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_length": 1024,
    "num_mel_bins": 128,
    "patch_size": 16,
    "frequency_stride": 10,
    "time_stride": 10,
}


def build_model(root: Path, tiny: bool) -> str:
    import torch
    import transformers as tf

    from pipeline.testing.tiny_classifiers import build_tiny_ast

    path = root / "ast"
    if tiny:
        return build_tiny_ast(str(path), multi_label=True)
    labels = {i: f"class_{i}" for i in range(527)}
    config = tf.ASTConfig(
        **AUDIOSET,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        problem_type="multi_label_classification",
    )
    with torch.device("meta"):  # no time spent on a random init we would overwrite anyway
        model = tf.ASTForAudioClassification(config)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    model.save_pretrained(str(path))
    tf.ASTFeatureExtractor().save_pretrained(str(path))
    return str(path)


def items(n: int, distinct: int = 32) -> list[np.ndarray]:
    """`n` items of 10.24 s: `distinct` speech-like clips, repeated (synthesis is slow)."""
    from pipeline.testing.synth import sentence, speechlike

    rng = np.random.default_rng(3)
    samples = int(ITEM_S * RATE)
    pool = []
    for i in range(min(n, distinct)):
        x = speechlike(sentence(rng, 12, 16), RATE, i)
        pool.append(np.resize(x, samples).astype(np.float32))
    return [pool[i % len(pool)] for i in range(n)]


def arrow_batches(audio: list[np.ndarray], rows: int):
    import pyarrow as pa

    from pipeline.columns import AUDIO, ERROR_CODE, ERROR_MESSAGE, ERROR_STAGE, SAMPLE_RATE

    out = []
    for i in range(0, len(audio), rows):
        part = audio[i : i + rows]
        n = len(part)
        flat = np.concatenate(part)
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in part])]).astype(np.int32)
        out.append(
            pa.table(
                {
                    AUDIO: pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
                    SAMPLE_RATE: pa.array([RATE] * n, pa.int32()),
                    ERROR_STAGE: pa.nulls(n, pa.string()),
                    ERROR_CODE: pa.nulls(n, pa.string()),
                    ERROR_MESSAGE: pa.nulls(n, pa.string()),
                }
            )
        )
    return out


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def raw_ceiling(stage, batch: int, repeats: int) -> float:
    """Audio seconds per wall second of the bare model on features already on the device."""
    import torch

    m = stage.model
    cfg = m.fbank.config
    features = torch.randn(batch, cfg.max_length, cfg.num_mel_bins, device=m.device).to(m.dtype)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            sync(m.device)
            t0 = time.perf_counter()
            m.model(input_values=features)
            sync(m.device)
            if i >= 2:  # two warm-up runs
                times.append(time.perf_counter() - t0)
    return batch * ITEM_S / statistics.median(times)


def end_to_end(stage, batches) -> tuple[float, int]:
    stage(batches[0].slice(0, 4))  # warm-up (kernels, allocator) outside the clock
    sync(stage.model.device)
    t0 = time.perf_counter()
    done = 0
    for b in batches:
        out = stage(b)
        done += b.num_rows - out.column("classify__labels").null_count
    sync(stage.model.device)
    return time.perf_counter() - t0, done


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="tiny AST (smoke run)")
    ap.add_argument("--items", type=int, default=None, help="default: 2048 (tiny/cpu: 16)")
    ap.add_argument("--rows", type=int, default=512, help="rows per stage call (Ray batch)")
    ap.add_argument(
        "--batch-seconds", type=float, default=None, help="default: the stage's (GPU: 1312)"
    )
    ap.add_argument("--ceiling-batch", type=int, default=128)
    ap.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "bench_classify_gpu: no CUDA device here; it measures against the H200 ceiling. "
            "For a smoke run on CPU: --device cpu --tiny"
        )
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
    from pipeline.kinds.classify import ClassifyTaskSpec
    from pipeline.spec import StorageOptions
    from pipeline.stages.classify import ClassifyStage

    small = args.tiny or args.device == "cpu"
    n = args.items or (16 if small else 2048)
    rows = min(args.rows, n)
    ceiling_batch = min(args.ceiling_batch, 8 if small else args.ceiling_batch)
    audio = items(n)
    batches = arrow_batches(audio, rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(Path(tmp), args.tiny)
        spec = ClassifyTaskSpec(
            model=path, device=args.device, top_k=5, batch_seconds=args.batch_seconds
        )
        stage = ClassifyStage(spec, StorageOptions()).load()
        ceiling = raw_ceiling(stage, ceiling_batch, repeats=3 if small else 10)
        wall, done = end_to_end(stage, batches)
    ours = n * ITEM_S / wall
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    lines = [
        f"## {'Tiny AST' if args.tiny else 'Real-size AST (527 labels)'} end to end vs raw model — "
        f"{datetime.now(UTC):%Y-%m-%d} — {platform.node()}: {name}, torch {torch.__version__}",
        "",
        "| run | items x 10.24 s | realtime x |",
        "|---|---:|---:|",
        f"| raw model, features on the device, batch {ceiling_batch}, {stage.model.dtype} | - | {ceiling:,.0f} |",
        f"| ClassifyStage, {rows} rows per call, batch_seconds {stage._batching.budget / RATE:.0f} | {n} | {ours:,.0f} |",
        "",
        f"- stage / raw model in this run: **{ours / ceiling:.0%}**"
        + (
            f"; / docs/FACTS.md ceiling ({CEILING_FACTS:,}x): {ours / CEILING_FACTS:.0%}"
            if not small
            else ""
        )
        + f" (goal >= 75%); {done} of {n} items labelled",
        "",
    ]
    print("\n".join(lines))
    suite_rows.emit(
        "AST tiny (smoke)" if args.tiny else "AST (87M, 527 labels)",
        ceiling_batch,
        ours,
        ceiling,
        suite_rows.torch_peak_gib(),
        f"{n} items x 10.24 s, {rows} rows per call; {done} labelled",
    )
    if not args.no_write:
        with open(args.results, "a") as f:
            f.write("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
