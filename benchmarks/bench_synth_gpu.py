"""GPU benchmark: SpeechT5 TTS + HiFi-GAN at real size through our batched loop.

    python benchmarks/bench_synth_gpu.py [--batches 64,128,256] [--items 512] [--reference]
    python benchmarks/bench_synth_gpu.py --device cpu --tiny      # smoke test, no GPU

On the GPU machine (which lacks pydantic, docs/FACTS.md): pack it here once
with `bash ../shared/device/pack.sh pydantic`, carry `.devcarry`, and run
`python3 .devcarry/unpack.py && export PYTHONPATH=/tmp/site:$PWD && python3 benchmarks/...`.

Real-size random-init models built from the default configs (those of
microsoft/speecht5_tts and microsoft/speecht5_hifigan; no download: speed depends on
shapes, not weights) in bf16. The random stop head is switched off (threshold above its
maximum), so every item decodes `maxlenratio * tokens / 2` steps: 100-character texts
give 600 frames (9.6 s) each, the shape of the raw ceiling in
docs/FACTS.md (1,364 s of audio per second at batch 256 without vocoder;
vocoder alone 4,080 at batch 16). `--mixed` draws 40-160 characters instead.

For each batch size it times, over the same texts: decoding + postnet alone, and the
whole `SpeechT5Synthesizer.synthesize` (tokenize, decode, postnet, vocoder, waveforms
back on the host as float32). `--reference` adds transformers' `generate_speech` at
batch 16 (no vocoder). Target: >= 800 s of audio per second end to end. Results are
appended to benchmarks/RESULTS.md (not in `--tiny` mode).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import suite_rows  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")


class CharTokenizer:
    """A stand-in for SpeechT5's character tokenizer (no sentencepiece needed): one id
    per character, `</s>` appended, SpeechT5's special ids."""

    pad_token_id = 1
    eos_token_id = 2

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def __call__(self, texts: list[str]) -> dict:
        ids = [[4 + ord(c) % (self.vocab_size - 4) for c in t] + [self.eos_token_id] for t in texts]
        return {"input_ids": ids}


def build(tiny: bool, device: str, dtype):
    import torch
    from transformers import (
        SpeechT5Config,
        SpeechT5ForTextToSpeech,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    from pipeline.testing.tiny_speecht5 import _TTS, _VOCODER

    torch.manual_seed(0)
    tts_cfg = SpeechT5Config(vocab_size=81, **_TTS) if tiny else SpeechT5Config()
    voc_cfg = SpeechT5HifiGanConfig(**_VOCODER) if tiny else SpeechT5HifiGanConfig()
    model = SpeechT5ForTextToSpeech(tts_cfg).to(device, dtype).eval()
    vocoder = SpeechT5HifiGan(voc_cfg).to(device, dtype).eval()
    return model, vocoder


def texts(n: int, mixed: bool, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(40, 161, n) if mixed else np.full(n, 99)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz     "))
    return ["".join(rng.choice(letters, int(k))) for k in lengths]


def timed(fn, device: str) -> float:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny models (a smoke test)")
    ap.add_argument("--items", type=int, default=None, help="default 512 (16 with --tiny)")
    ap.add_argument("--batches", default=None, help="default 64,128,256 (4,16 with --tiny)")
    ap.add_argument("--maxlenratio", type=float, default=6.0)
    ap.add_argument("--mixed", action="store_true", help="40-160 characters instead of 99")
    ap.add_argument("--reference", action="store_true", help="also time generate_speech")
    args = ap.parse_args(argv)
    args.items = args.items or (16 if args.tiny else 512)
    args.batches = args.batches or ("4,16" if args.tiny else "64,128,256")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_synth_gpu: no CUDA device here; run it on the GPU machine, or smoke-test "
                 "it with --device cpu --tiny")  # fmt: skip

    from pipeline.models.speecht5 import SpeechT5Synthesizer
    from pipeline.models.speecht5_decode import DecodeOptions, decode, postnet, split_seeds

    if args.device == "cpu":
        torch.set_num_threads(1)  # tiny ops: more threads only wait on each other
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model, vocoder = build(args.tiny, args.device, dtype)
    options = DecodeOptions(stop_threshold=3.0, maxlenratio=args.maxlenratio)
    tokenizer = CharTokenizer(model.config.vocab_size)
    synth = SpeechT5Synthesizer(
        "random-init", model, vocoder, tokenizer, args.device, dtype, options
    )
    items = texts(args.items, args.mixed)
    speakers = np.random.default_rng(1).standard_normal((len(items), 512)).astype(np.float32)
    order = sorted(range(len(items)), key=lambda i: len(items[i]))
    frames = [2 * int(len(t + "_") * args.maxlenratio / 2) for t in items]
    audio_s = sum(frames) * synth.hop / synth.sampling_rate

    def groups(b: int):
        return [order[s : s + b] for s in range(0, len(order), b)]

    def run_synth(b: int) -> None:
        for g in groups(b):
            synth.synthesize([items[i] for i in g], speakers[g], g)

    def run_decode(b: int) -> None:
        for g in groups(b):
            ids = tokenizer([items[i] for i in g])["input_ids"]
            n = max(map(len, ids))
            x = torch.tensor([q + [1] * (n - len(q)) for q in ids], device=args.device)
            with (
                torch.inference_mode(),
                torch.autocast("cuda", dtype, enabled=args.device == "cuda"),
            ):
                spk = torch.from_numpy(speakers[g]).to(args.device)
                out = decode(model, x, (x != 1).long(), spk, split_seeds(g, args.device), options)
                postnet(model, [d.mel for d in out])

    rows = []
    for b in [int(x) for x in args.batches.split(",")]:
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        run_synth(b)  # warm-up (allocator, kernels)
        decode_s = timed(lambda b=b: run_decode(b), args.device)
        synth_s = timed(lambda b=b: run_synth(b), args.device)
        mem = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else 0.0
        rows.append((b, decode_s, synth_s, mem))
        print(
            f"batch {b}: decode+postnet {audio_s / decode_s:.0f} s/s, end to end {audio_s / synth_s:.0f} s/s"
        )

    reference = None
    if args.reference:
        b = 16
        subset = order[: 4 * b]
        ref_audio = sum(frames[i] for i in subset) * synth.hop / synth.sampling_rate

        def run_reference() -> None:
            for s in range(0, len(subset), b):
                g = subset[s : s + b]
                ids = tokenizer([items[i] for i in g])["input_ids"]
                n = max(map(len, ids))
                x = torch.tensor([q + [1] * (n - len(q)) for q in ids], device=args.device)
                spk = torch.from_numpy(speakers[g]).to(args.device, dtype)
                model.generate_speech(
                    x,
                    spk,
                    attention_mask=(x != 1).long(),
                    threshold=3.0,
                    maxlenratio=args.maxlenratio,
                )

        run_reference()
        reference = ref_audio / timed(run_reference, args.device)
        print(f"transformers generate_speech, batch {b}, no vocoder: {reference:.0f} s/s")

    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    )
    lines = [
        f"## {'tiny' if args.tiny else 'real-size'} SpeechT5 TTS + HiFi-GAN, {dtype}, "
        f"{'mixed lengths' if args.mixed else '600 frames each'} — {datetime.now(UTC):%Y-%m-%d} — "
        f"{platform.node()}: {device_name}, torch {torch.__version__}",
        "",
        f"{len(items)} texts, {audio_s:.0f} s of audio per pass; seconds of audio per wall second.",
        "",
        "| batch | decode + postnet | end to end (with vocoder, to host) | peak GPU GiB |",
        "|---:|---:|---:|---:|",
        *(f"| {b} | {audio_s / d:.0f} | {audio_s / s:.0f} | {m:.1f} |" for b, d, s, m in rows),
        "",
    ]
    if reference is not None:
        lines += [
            f"- transformers `generate_speech`, batch 16, no vocoder: {reference:.0f} s/s",
            "",
        ]
    print("\n".join(lines))
    for b, d, s, m in rows:
        suite_rows.emit(
            "SpeechT5 tiny + vocoder (smoke)" if args.tiny else "SpeechT5 TTS + HiFi-GAN",
            b,
            audio_s / s,
            audio_s / d,
            m or None,
            "audio s out per s; ceiling column: our decode + postnet without the vocoder",
        )
    if not args.tiny:
        with RESULTS.open("a") as f:
            f.write("\n" + "\n".join(lines) + "\n")  # a blank line after whatever came before


if __name__ == "__main__":
    main()
