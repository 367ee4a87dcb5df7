"""GPU benchmark: WhisperStage end to end vs transformers' pipeline and raw `generate`.

    python benchmarks/bench_whisper_gpu.py [--items 1024] [--tokens 112] [--pipeline-items 256]
    python benchmarks/bench_whisper_gpu.py --device cpu --tiny      # smoke run, no GPU needed

1. Builds a random-init Whisper large-v3-turbo of the real size (32 encoder layers,
   4 decoder layers, d_model 1280, 128 mel bins, the real 51,866-token layout; config
   only, nothing downloaded), saves it in bf16 like a hub checkpoint, and loads it back
   through the stage's own loading path. Speed depends on shapes, not on weights.
2. Makes speech-like clips of ~29.5 s (`pipeline/testing/synth.py`), tiled to `--items`.
3. Every side generates exactly `--tokens` tokens per item (`min_new_tokens` = the
   maximum: a random model's `<|endoftext|>` would otherwise end items at random).
4. Measures, after a warm-up, on the same items:
   - audiobatch `WhisperStage` end to end: Arrow batches of 256 rows in, columns out
     (log-mel on the GPU, language detection, greedy decoding, text, flags), micro_batch 256;
   - `transformers.pipeline("automatic-speech-recognition", batch_size=16)` with its
     defaults (5 beams; CPU feature extraction), on `--pipeline-items` of them;
   - raw `model.generate` at batch 256 on log-mel already on the GPU (the ceiling).
Prints realtime factors (audio seconds per wall second) and ratios, checks the targets
(>= 2,500x end to end on one H200, >= 5x the pipeline), writes its section of
benchmarks/RESULTS.md and, when $OUT is set, a copy of it and a JSON record there.
Exits with a message (status 2) when asked for CUDA on a machine without it.
"""

from __future__ import annotations

import argparse
import json
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
from bench_whisper_cpu import arrow_batches, write_section  # noqa: E402

SECTION = "## GPU, Whisper large-v3-turbo size, random init (`bench_whisper_gpu.py`)"
RATE = 16_000
TARGET_REALTIME, TARGET_VS_PIPELINE = 2500.0, 5.0
TURBO = {
    "d_model": 1280,
    "encoder_layers": 32,
    "decoder_layers": 4,
    "encoder_attention_heads": 20,
    "decoder_attention_heads": 20,
    "encoder_ffn_dim": 5120,
    "decoder_ffn_dim": 5120,
    "num_mel_bins": 128,
    "max_source_positions": 1500,
    "max_target_positions": 448,
}


def build_turbo(path: str, device: str) -> str:
    """Random-init large-v3-turbo, saved in bf16 with an offline tokenizer of the real layout."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    from pipeline.testing.tiny_whisper import save_whisper, token_ids, whisper_tokenizer

    if (Path(path) / "config.json").exists():
        return path
    languages = tuple(LANGUAGES)  # the 100 of large-v3, in its order
    tokenizer = whisper_tokenizer(languages, text_tokens=50257)
    ids = token_ids(tokenizer, languages)
    eot = ids["<|endoftext|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        **TURBO,
    )
    with torch.device(device):
        model = WhisperForConditionalGeneration(config).to(torch.bfloat16).eval()
    return save_whisper(path, model, tokenizer, languages)


def clips(n: int, distinct: int, seconds: float) -> list[np.ndarray]:
    """`n` clips, `distinct` different ones of about `seconds` each, tiled."""
    from pipeline.testing.synth import SECONDS_PER_CHAR, sentences, speechlike

    out = []
    for k in range(distinct):
        words = " ".join(sentences(40, seed=100 + k))
        text = words[: int(seconds / SECONDS_PER_CHAR) - 3].rsplit(" ", 1)[0]
        out.append(speechlike(text, RATE, seed=100 + k))
    return [out[i % distinct] for i in range(n)]


def run_stage(model_dir: str, audio: list[np.ndarray], tokens: int, device: str) -> float:
    from pipeline.kinds.whisper import WhisperTaskSpec
    from pipeline.spec import StorageOptions
    from pipeline.stages.whisper import WhisperStage

    spec = WhisperTaskSpec(
        model=model_dir, device=device, batch_size=256, micro_batch=256, max_new_tokens=tokens
    )
    stage = WhisperStage(spec, StorageOptions()).load()
    stage.model.model.generation_config.min_new_tokens = tokens  # no early <|endoftext|>
    for batch in arrow_batches(audio[: min(len(audio), 32)], 32):  # warm-up
        stage(batch)
    _sync(device)
    t0 = time.perf_counter()
    for batch in arrow_batches(audio, spec.batch_size):
        stage(batch)
    _sync(device)
    return time.perf_counter() - t0


def run_pipeline(model_dir: str, audio: list[np.ndarray], tokens: int, device: str) -> float:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).to(device)
    processor = WhisperProcessor.from_pretrained(model_dir)
    asr = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=processor.tokenizer,
        feature_extractor=processor.feature_extractor,
        device=device,
        batch_size=16,
    )
    forced = {"min_new_tokens": tokens, "max_new_tokens": tokens}
    asr(audio[:2], generate_kwargs=forced)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    asr(audio, generate_kwargs=forced)
    _sync(device)
    wall = time.perf_counter() - t0
    del asr, model
    return wall


def run_raw_generate(
    model_dir: str, audio: list[np.ndarray], tokens: int, device: str, repeats: int
) -> float:
    """Median seconds of one `generate` call over `audio` (features already on the device)."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from pipeline.models.whisper.features import LogMel

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = WhisperForConditionalGeneration.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="sdpa"
    ).to(device)
    extractor = WhisperProcessor.from_pretrained(model_dir).feature_extractor
    features = LogMel(extractor, device).windows(audio).to(dtype)
    kwargs = {"max_new_tokens": tokens, "min_new_tokens": tokens, "language": "en"}
    times = []
    with torch.inference_mode():
        model.generate(features[:8], **kwargs)  # warm-up
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            model.generate(features, task="transcribe", **kwargs)
            _sync(device)
            times.append(time.perf_counter() - t0)
    del model
    return statistics.median(times)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny model (smoke run)")
    ap.add_argument("--items", type=int, default=None, help="default 1024 (tiny: 8)")
    ap.add_argument("--pipeline-items", type=int, default=None, help="default 256 (tiny: 4)")
    ap.add_argument("--tokens", type=int, default=None, help="default 112 (tiny: 8)")
    ap.add_argument("--raw-batch", type=int, default=256)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "audiobatch-bench"))
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    args = ap.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    import transformers

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench_whisper_gpu: no CUDA device is visible, so there is nothing to measure here. "
            "Run it on a GPU machine, or `--device cpu --tiny` for a smoke run of the same code.",
            file=sys.stderr,
        )
        sys.exit(2)
    items = args.items or (8 if args.tiny else 1024)
    pipeline_items = min(args.pipeline_items or (4 if args.tiny else 256), items)
    tokens = args.tokens or (8 if args.tiny else 112)
    seconds = 4.0 if args.tiny else 29.5
    workdir = Path(args.workdir)
    if args.tiny:
        from pipeline.testing.tiny_whisper import build_tiny_whisper

        model_dir = str(workdir / "tiny-whisper")
        if not (Path(model_dir) / "config.json").exists():
            build_tiny_whisper(model_dir)
        name = "tiny Whisper (smoke run)"
    else:
        model_dir = build_turbo(str(workdir / "turbo-random"), args.device)
        name = "Whisper large-v3-turbo size, random init, bf16"

    audio = clips(items, distinct=min(items, 16), seconds=seconds)
    per_item = len(audio[0]) / RATE
    ours = run_stage(model_dir, audio, tokens, args.device)
    hf = run_pipeline(model_dir, audio[:pipeline_items], tokens, args.device)
    raw_batch = min(args.raw_batch, items)
    raw = run_raw_generate(model_dir, audio[:raw_batch], tokens, args.device, repeats=2)

    rt = {
        "stage": items * per_item / ours,
        "pipeline": pipeline_items * per_item / hf,
        "raw_generate": raw_batch * per_item / raw,
    }
    if args.device == "cuda":
        gpu = torch.cuda.get_device_name(0)
        machine = f"{platform.node()}: {gpu}, {os.cpu_count()} cores"
    else:
        machine = f"{platform.node()}: {os.cpu_count()} cores, CPU only"
    lines = [
        f"{SECTION} — {datetime.now(UTC):%Y-%m-%d} — {machine}",
        "",
        f"{name}; {per_item:.1f} s speech-like clips; exactly {tokens} tokens per item on every "
        f"side; torch {torch.__version__}, transformers {transformers.__version__}; warm-up "
        "outside the clock.",
        "",
        "| run | items | batch | wall s | realtime x |",
        "|---|---:|---:|---:|---:|",
        f"| audiobatch WhisperStage, end to end (Arrow in, columns out) | {items} | 256 | {ours:.2f} | {rt['stage']:.0f} |",
        f"| transformers pipeline, batch_size=16, defaults (5 beams) | {pipeline_items} | 16 | {hf:.2f} | {rt['pipeline']:.0f} |",
        f"| raw `generate`, greedy, log-mel already on the device | {raw_batch} | {raw_batch} | {raw:.2f} | {rt['raw_generate']:.0f} |",
        "",
        f"- WhisperStage / pipeline: **{rt['stage'] / rt['pipeline']:.1f}x** (target >= {TARGET_VS_PIPELINE:.0f}x); "
        f"WhisperStage / raw generate: {rt['stage'] / rt['raw_generate']:.2f}x; "
        f"end to end {rt['stage']:.0f}x realtime (target >= {TARGET_REALTIME:.0f}x on one H200)",
    ]
    print("\n".join(lines))
    suite_rows.emit(
        "Whisper tiny (smoke)" if args.tiny else "Whisper large-v3-turbo, greedy",
        256,
        rt["stage"],
        rt["raw_generate"],
        suite_rows.torch_peak_gib(),
        f"{tokens} tokens/item; transformers pipeline(batch_size=16) {rt['pipeline']:,.0f}x, "
        f"stage / pipeline {rt['stage'] / rt['pipeline']:.1f}x (target >= 5x)",
    )
    record = {
        "items": items,
        "tokens": tokens,
        "seconds_per_item": per_item,
        "wall": {"stage": ours, "pipeline": hf, "raw_generate": raw},
        "realtime": rt,
        "machine": machine,
    }
    if os.environ.get("OUT"):
        out = Path(os.environ["OUT"])
        (out / "bench_whisper_gpu.json").write_text(json.dumps(record, indent=2))
        (out / "bench_whisper_gpu.md").write_text("\n".join(lines) + "\n")
    if args.device == "cuda" and not args.tiny and not args.no_write:
        write_section(lines, SECTION)


if __name__ == "__main__":
    main()
