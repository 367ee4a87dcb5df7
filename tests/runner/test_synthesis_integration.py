"""A texts job end to end on the local Ray cluster: SpeechT5 synthesis, audio written to
the S3 emulator under stable keys, a round-trip CTC transcript scored against the text,
and exactly once across a re-run."""

from __future__ import annotations

import json

import fsspec
import jiwer
import numpy as np
import pytest
import soundfile as sf

from pipeline.io.storage import arrow_filesystem
from pipeline.io.tables import read_table
from pipeline.reports.report import ReportRequest, build_report
from pipeline.runner import run_job
from pipeline.spec import StorageOptions, parse_spec
from pipeline.testing.tiny_ctc import build_tiny_ctc
from pipeline.testing.tiny_speecht5 import build_tiny_speecht5
from pipeline.text.normalize import get_normalizer

pytestmark = pytest.mark.integration

TEXTS = [
    {"id": "a", "text": "Hello there, how are you?"},
    {"id": "b", "text": "It costs $5 on the 3rd of May."},
    {"id": "c", "text": "Short."},
    {"id": "d", "text": "A longer sentence. And a second one, to make two pieces of it."},
    {"id": "e", "text": "   "},  # empty: an error row
    {"id": "a", "text": "duplicate id"},  # duplicate: an error row
    {"id": "f", "text": "Voice of bob.", "speaker": "bob"},
    {"id": "g", "text": "Voice of nobody.", "speaker": "zed"},  # unknown speaker
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-models")
    tts, vocoder = build_tiny_speecht5(str(root / "speecht5"))
    ctc = build_tiny_ctc(str(root / "ctc"), seed=5)
    return tts, vocoder, ctc


def test_texts_job_writes_audio_syntheses_and_roundtrip_once(
    ray_address, s3_bucket, tmp_path, models
):
    endpoint, bucket = s3_bucket
    tts, vocoder, ctc = models
    texts = tmp_path / "texts" / "batch1.jsonl"
    texts.parent.mkdir()
    texts.write_text("".join(json.dumps(r) + "\n" for r in TEXTS))
    voices = tmp_path / "voices.jsonl"
    rng = np.random.default_rng(0)
    voices.write_text(json.dumps({"speaker": "bob", "xvector": rng.normal(size=512).tolist()}))
    out = f"s3://{bucket}/out"
    storage = {"endpoint_url": endpoint}
    spec = parse_spec(
        {
            "name": "tts",
            "input": {"uri": str(texts.parent), "format": "texts"},
            "tasks": [
                {
                    "kind": "synthesize",
                    "model": tts,
                    "vocoder": vocoder,
                    "speaker_embeddings": str(voices),
                    "roundtrip_task": "asr",
                    "maxlenratio": 4.0,
                    "batch_size": 4,
                    "num_cpus": 0.5,  # two actor pools and the tasks share 2 CPUs
                },
                {"kind": "ctc", "name": "asr", "model": ctc, "batch_size": 4, "num_cpus": 0.5},
            ],
            "output": {"uri": out, "storage": storage},
            "runtime": {"read_batch_items": 4, "progress_interval_s": 60},
        }
    )
    result = run_job(spec, out=lambda _: None)
    assert result.status == "succeeded"
    fs, root = arrow_filesystem(out, StorageOptions(endpoint_url=endpoint))
    syntheses = read_table(fs, root, "syntheses").to_pylist()
    transcripts = read_table(fs, root, "transcripts").to_pylist()
    errors = read_table(fs, root, "errors").to_pylist()

    ok = {"a", "b", "c", "d", "f"}
    assert sorted(r["text_id"] for r in syntheses) == sorted(ok)
    assert sorted((r["member"], r["error_code"]) for r in errors) == [
        ("e", "empty"),
        ("g", "invalid_input"),
        ("row=5", "duplicate_id"),
    ]
    assert all(r["task"] is None for r in errors)  # synthesis failures cost every task
    assert len(transcripts) == len(ok)  # the round-trip task wrote its own table too

    s3 = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})
    normalizer = get_normalizer("basic")
    for row in syntheses:
        assert row["audio_uri"].startswith(f"{out}/audio/synthesize/")
        with s3.open(row["audio_uri"], "rb") as f:
            audio, rate = sf.read(f, dtype="float32")
        assert rate == 16000 and abs(len(audio) / rate - row["duration_s"]) < 1e-6
        assert row["roundtrip_task"] == "asr" and row["transcript"] is not None
        # The round-trip scores agree with jiwer on the same normalised texts.
        ref, hyp = normalizer(row["text"]), normalizer(row["transcript"])
        edits = row["substitutions"] + row["deletions"] + row["insertions"]
        assert edits / row["ref_words"] == pytest.approx(jiwer.wer(ref, hyp or ""))
        assert row["chars_per_s"] is not None and row["rms_dbfs"] is not None
    assert any(r["normalized_text"] and "five dollars" in r["normalized_text"] for r in syntheses)

    report = build_report(ReportRequest(out, StorageOptions(endpoint_url=endpoint)))["syntheses"][
        "synthesize"
    ]
    assert report["items"] == len(ok) and report["roundtrip"]["task"] == "asr"

    # A re-run finds everything done; the audio files were not duplicated.
    keys = sorted(s3.find(f"{bucket}/out/audio"))
    again = run_job(spec, out=lambda _: None)
    assert again.counters.items == 0
    assert sorted(s3.find(f"{bucket}/out/audio")) == keys and len(keys) == len(ok)
