"""GPU benchmark: wav2vec2-base CTC end to end through Ray, and frame classification through
its stage, each beside the raw model's ceiling measured in the same run.

    python benchmarks/bench_wav2vec2_gpu.py --task ctc [--items 4000] [--seconds 16]
    python benchmarks/bench_wav2vec2_gpu.py --task frames [--items 2048]
    python benchmarks/bench_wav2vec2_gpu.py --task ctc --device cpu --tiny   # smoke run

Random-init models with the configuration of facebook/wav2vec2-base-960h (94M; group norm,
no attention mask) and a wav2vec2-base frame classifier (2 labels); nothing is downloaded:
speed depends on shapes, not weights. bf16 on CUDA.
- `ctc`: generates a 16 kHz FLAC corpus with a manifest in the work folder (distinct
  speech-like clips, copied to `--items` files), then runs a job through `run_job` on a
  local Ray (read, decode, CtcStage on the GPU, score, write the tables), Ray started
  before the clock, model load inside it. Reports the job's audio over wall seconds
  (fixed costs included) and over the CTC actor's busy seconds, and the raw forward at
  batch 64 x `--seconds` on input already on the device (the README's 10,400x on one H200).
- `frames`: `FramesStage` on Arrow batches as an actor gets them, vs the raw forward.
Prints its lines and, under the GPU suite (benchmarks/gpu_suite.py), adds its row to the
suite's table. Exits with a message (status 2) when asked for CUDA on a machine without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import suite_rows  # noqa: E402

RATE = 16_000
BASE = {  # facebook/wav2vec2-base-960h
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
    "layerdrop": 0.0,
    "mask_time_prob": 0.0,
}


def build_model(root: Path, task: str, tiny: bool) -> str:
    path = root / f"{task}-{'tiny' if tiny else 'base'}"
    if (path / "config.json").exists():
        return str(path)
    if task == "ctc":
        return _build_ctc(path, tiny)
    return _build_frames(path, tiny)


def _build_ctc(path: Path, tiny: bool) -> str:
    from pipeline.testing import tiny_ctc as tm

    if tiny:
        return tm.build_tiny_ctc(str(path), arch="wav2vec2_groupnorm")
    import torch
    import transformers as tf

    vocab = tm._vocab(tm.LETTERS)
    config = tf.Wav2Vec2Config(vocab_size=len(vocab), pad_token_id=vocab[tm.PAD], **BASE)
    model = tf.Wav2Vec2ForCTC(config).to(torch.bfloat16).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tm._save_processor(path, vocab, group_norm=True)
    return str(path)


def _build_frames(path: Path, tiny: bool) -> str:
    from pipeline.testing import tiny_classifiers as tc

    if tiny:
        return tc.build_tiny_frame_classifier(str(path), group_norm=True)
    import torch
    import transformers as tf

    labels = {"id2label": {0: "speech", 1: "music"}, "label2id": {"speech": 0, "music": 1}}
    config = tf.Wav2Vec2Config(**BASE, **labels)
    model = tf.Wav2Vec2ForAudioFrameClassification(config).to(torch.bfloat16).eval()
    return tc._save(model, tc._wav2vec2_extractor(group_norm=True), str(path))


def clips(distinct: int, seconds: float) -> list[np.ndarray]:
    from pipeline.testing.synth import sentence, speechlike

    rng = np.random.default_rng(5)
    samples = int(seconds * RATE)
    out = []
    for i in range(distinct):
        x = speechlike(sentence(rng, 14, 20), RATE, 50 + i)
        out.append(np.resize(x, samples).astype(np.float32))
    return out


def flac_corpus(root: Path, n: int, seconds: float, distinct: int = 32) -> Path:
    """`n` FLAC files of `seconds` each (copies of `distinct` clips) and a manifest."""
    from pipeline.testing.synth import encode

    folder = root / f"flac-{n}x{seconds:g}s"
    if (folder / "manifest.jsonl").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    encoded = [encode(x, RATE, "flac") for x in clips(min(n, distinct), seconds)]
    rows = []
    for i in range(n):
        name = f"{i // 1000:03d}/item{i:06d}.flac"
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(encoded[i % len(encoded)])
        rows.append({"path": name, "text": "a b c"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def ctc_job(corpus: Path, model: str, out: Path, device: str, batch: int) -> dict:
    """One job over the corpus; Ray is started (or joined) before the clock."""
    import ray

    from pipeline.runner import run_job
    from pipeline.spec import parse_spec

    shutil.rmtree(out, ignore_errors=True)
    gpu = device == "cuda"
    spec = parse_spec(
        {
            "name": "bench-ctc",
            "input": {"uri": str(corpus), "manifest": str(corpus / "manifest.jsonl")},
            "tasks": [
                {
                    "kind": "ctc",
                    "model": model,
                    "device": device,
                    "batch_size": batch,
                    **({"num_gpus": 1} if gpu else {"num_cpus": 0.5}),
                }
            ],
            "output": {"uri": str(out)},
            "runtime": {"read_batch_items": 64, "decode_batch_size": 32, "progress_interval_s": 10},
        }
    )
    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, logging_level="WARNING")
    t0 = time.perf_counter()
    result = run_job(spec, out=lambda line: print("  " + line), report=False)
    wall = time.perf_counter() - t0
    c = result.counters
    return {
        "audio_s": c.audio_s,
        "wall_s": wall,
        "busy_s": c.stages["ctc"].busy_s,
        "items": c.items,
    }


def raw_ceiling(model_dir: str, task: str, batch: int, seconds: float, device: str, repeats: int):
    """Audio seconds per wall second of the bare model on waveforms already on the device."""
    import torch
    import transformers as tf

    cls = tf.Wav2Vec2ForCTC if task == "ctc" else tf.Wav2Vec2ForAudioFrameClassification
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = cls.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa").to(device)
    x = torch.randn(batch, int(seconds * RATE), device=device, dtype=dtype)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            _sync(device)
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            if i >= 2:  # two warm-up runs
                times.append(time.perf_counter() - t0)
    del model, x
    return batch * seconds / statistics.median(times)


def frames_stage(model_dir: str, audio: list[np.ndarray], device: str, rows: int) -> float:
    from bench_classify_gpu import arrow_batches

    from pipeline.kinds.frames import FramesTaskSpec
    from pipeline.spec import StorageOptions
    from pipeline.stages.frames import FramesStage

    stage = FramesStage(FramesTaskSpec(model=model_dir, device=device), StorageOptions())
    batches = arrow_batches(audio, rows)
    stage(batches[0].slice(0, 4))  # warm-up outside the clock
    _sync(device)
    t0 = time.perf_counter()
    for b in batches:
        stage(b)
    _sync(device)
    return time.perf_counter() - t0


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=["ctc", "frames"], default="ctc")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny models (smoke run)")
    ap.add_argument("--items", type=int, default=None, help="default ctc 4000, frames 2048")
    ap.add_argument("--seconds", type=float, default=16.0, help="audio per item")
    ap.add_argument("--batch", type=int, default=256, help="rows per stage call")
    ap.add_argument("--ceiling-batch", type=int, default=64)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "audiobatch-w2v2"))
    args = ap.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_wav2vec2_gpu: no CUDA device is visible; for a smoke run of the same code: "
              "--device cpu --tiny", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    small = args.tiny or args.device == "cpu"
    seconds = min(args.seconds, 4.0) if small else args.seconds
    n = args.items or (8 if small else 4000 if args.task == "ctc" else 2048)
    batch, ceiling_batch = min(args.batch, n), min(args.ceiling_batch, 4 if small else 1 << 20)
    root = Path(args.workdir)
    model = build_model(root, args.task, args.tiny)
    name = f"wav2vec2-{'tiny' if args.tiny else 'base'} {'CTC' if args.task == 'ctc' else 'frames'}"
    if args.task == "ctc":
        t0 = time.perf_counter()
        corpus = flac_corpus(root, n, seconds)
        print(f"{name}: corpus of {n} FLAC items ready in {time.perf_counter() - t0:.1f} s")
        job = ctc_job(corpus, model, root / "out", args.device, batch)
        e2e = job["audio_s"] / job["wall_s"]
        note = (
            f"{job['items']} items through Ray (read, decode, model, score, write), fixed costs "
            f"included; CTC actor busy {job['audio_s'] / job['busy_s']:,.0f}x"
        )
    else:
        audio = [clips(1, seconds)[0]] * n  # the stage sees the same shapes either way
        wall = frames_stage(model, audio, args.device, batch)
        e2e = n * seconds / wall
        note = f"{n} items x {seconds:g} s through FramesStage, Arrow in, segments out"
    ceiling = raw_ceiling(model, args.task, ceiling_batch, seconds, args.device, 2 if small else 10)
    peak = suite_rows.torch_peak_gib()  # this process's: the CTC actor's shows in the suite's
    print(f"{name}: end to end {e2e:,.0f}x realtime, raw model {ceiling:,.0f}x "
          f"(batch {ceiling_batch}), ratio {e2e / ceiling:.0%}; {note}")  # fmt: skip
    suite_rows.emit(name, batch, e2e, ceiling, peak, note)


if __name__ == "__main__":
    main()
