"""CPU benchmark: batched SpeechT5 synthesis vs one text at a time, same texts, one run.

    .venv/bin/python benchmarks/bench_synth_cpu.py [--items 96] [--batch 32] [--threads 1]

Tiny random-init SpeechT5 + HiFi-GAN (`pipeline/testing/tiny_speecht5.py`), texts of 10 to
200 characters. Three ways through the same texts, speakers and seeds:
1. transformers' `generate_speech` (with the vocoder), one text at a time: the plain loop
   a user would write;
2. our adapter (`SpeechT5Synthesizer.synthesize`), one text at a time;
3. our adapter on length-sorted micro-batches of `--batch` texts.
It checks that 2 and 3 give the same audio, prints the ratios and appends them to
benchmarks/RESULTS.md with the machine named. Model building and loading are outside the
clocks; one warm-up call runs first.
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
_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "five",
    "wizards", "box", "and", "quartz", "sphinx", "judges", "my", "vow", "on", "calm",
    "bright", "morning", "near", "old", "river", "bank",
)  # fmt: skip


def texts(n: int, seed: int) -> list[str]:
    """Sentences of 10 to 200 characters."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        target = int(rng.integers(10, 200))
        words: list[str] = []
        while len(" ".join(words)) < target:
            words.append(str(rng.choice(_WORDS)))
        out.append(" ".join(words).capitalize() + ".")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=96)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: see RESULTS.md)")
    ap.add_argument("--maxlenratio", type=float, default=3.0)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "audiobatch-synth"))
    args = ap.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import psutil
    import torch

    from pipeline.kinds.synthesize import SynthesizeTaskSpec
    from pipeline.models.speecht5 import load_speecht5
    from pipeline.spec import StorageOptions
    from pipeline.testing.tiny_speecht5 import build_tiny_speecht5

    torch.set_num_threads(args.threads)
    tts, vocoder = build_tiny_speecht5(str(Path(args.workdir) / "model"))
    spec = SynthesizeTaskSpec(model=tts, vocoder=vocoder, maxlenratio=args.maxlenratio)
    synth = load_speecht5(spec, StorageOptions(), "cpu")
    items = texts(args.items, seed=3)
    speakers = np.random.default_rng(4).standard_normal((len(items), 512)).astype(np.float32)
    seeds = list(range(len(items)))
    synth.synthesize(items[:2], speakers[:2], seeds[:2])  # warm-up

    t0 = time.perf_counter()
    ids = [synth.tokenizer(t, return_tensors="pt").input_ids for t in items]
    with torch.inference_mode():
        plain = [
            synth.model.generate_speech(
                x, torch.from_numpy(s[None]), vocoder=synth.vocoder, maxlenratio=args.maxlenratio
            )
            for x, s in zip(ids, speakers, strict=True)
        ]
    plain_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    single = [
        synth.synthesize([t], speakers[i : i + 1], [seeds[i]])[0] for i, t in enumerate(items)
    ]
    single_s = time.perf_counter() - t0

    order = sorted(range(len(items)), key=lambda i: len(items[i]))
    batched: dict[int, object] = {}
    t0 = time.perf_counter()
    for start in range(0, len(order), args.batch):
        group = order[start : start + args.batch]
        outs = synth.synthesize(
            [items[i] for i in group], speakers[group], [seeds[i] for i in group]
        )
        batched.update(zip(group, outs, strict=True))
    batched_s = time.perf_counter() - t0

    audio_s = sum(len(s.waveform) for s in single) / synth.sampling_rate
    plain_audio_s = sum(len(w) for w in plain) / synth.sampling_rate
    diff = max(
        float(np.abs(batched[i].waveform - s.waveform).max())
        for i, s in enumerate(single)
        if len(batched[i].waveform) == len(s.waveform)
    )
    same_lengths = all(batched[i].n_frames == s.n_frames for i, s in enumerate(single))
    runaways = sum(s.runaway for s in single)
    lines = [
        f"## CPU, tiny SpeechT5 TTS + HiFi-GAN, batch {args.batch}, {args.threads} torch "
        f"thread(s) — {datetime.now(UTC):%Y-%m-%d} — {platform.node()}: {psutil.cpu_count()} "
        f"cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU",
        "",
        "| run | items | audio s | wall s | audio s / wall s |",
        "|---|---:|---:|---:|---:|",
        f"| transformers generate_speech, one at a time | {len(items)} | {plain_audio_s:.0f} "
        f"| {plain_s:.1f} | {plain_audio_s / plain_s:.1f} |",
        f"| our loop, one at a time | {len(items)} | {audio_s:.0f} | {single_s:.1f} "
        f"| {audio_s / single_s:.1f} |",
        f"| our loop, batches of {args.batch} | {len(items)} | {audio_s:.0f} | {batched_s:.1f} "
        f"| {audio_s / batched_s:.1f} |",
        "",
        f"- batched / one at a time (our loop): **{single_s / batched_s:.2f}x**; batched / "
        f"transformers one at a time: **{plain_s / batched_s:.2f}x** (per second of audio: "
        f"{(audio_s / batched_s) / (plain_audio_s / plain_s):.2f}x)",
        f"- batched vs one at a time: same frame counts {same_lengths}, max sample difference "
        f"{diff:.1e}; {runaways} of {len(items)} texts ran to maxlenratio {args.maxlenratio}",
        "",
    ]
    print("\n".join(lines))
    with RESULTS.open("a") as f:
        f.write("\n" + "\n".join(lines) + "\n")  # a blank line after whatever came before


if __name__ == "__main__":
    main()
