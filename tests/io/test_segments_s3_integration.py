"""Segments of one long file on object storage (issue 11): one GET per file and work unit.

Requests are counted by the loopback proxy in front of the S3 emulator (moto), so what
is counted is what s3fs really asked for."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import soundfile as sf

from pipeline.io.listing import plan_input
from pipeline.io.reading import read_unit
from pipeline.spec import InputSpec
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

RATE = 16000
MAX = 64 * 2**20


def _long_wav(seconds: int) -> bytes:
    """Second i holds the constant 0.01 * (i + 1): a decoded segment says where it is from."""
    x = np.concatenate([np.full(RATE, 0.01 * (i + 1), np.float32) for i in range(seconds)])
    buf = io.BytesIO()
    sf.write(buf, x, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_nemo_segments_of_one_file_fetch_it_once_per_unit(s3_bucket):
    import s3fs

    endpoint, bucket = s3_bucket
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
    fs.pipe(f"{bucket}/corpus/long.wav", _long_wav(30))
    lines = [
        {"audio_filepath": "long.wav", "offset": float(i), "duration": 1.0, "text": f"s{i}"}
        for i in range(0, 30, 2)
    ]
    manifest = "\n".join(json.dumps(x) for x in lines).encode() + b"\n"
    fs.pipe(f"{bucket}/corpus/manifest.jsonl", manifest)
    with FaultProxy(endpoint) as proxy:
        spec = InputSpec(
            uri=f"s3://{bucket}/corpus",
            manifest=f"s3://{bucket}/corpus/manifest.jsonl",
            storage={"endpoint_url": proxy.url},
        )
        plan = plan_input(spec, items_per_unit=8)
        assert [u.num_items for u in plan.units] == [8, 7]
        proxy.faults.requests.clear()
        got = [r for u in plan.units for t in read_unit(u, spec, MAX, 4) for r in t.to_pylist()]
        gets = [r for r in proxy.faults.requests if re.match(rf"GET /{bucket}/corpus/long.wav", r)]
    assert [r["reference"] for r in got] == [x["text"] for x in lines]
    assert [r["error_code"] for r in got] == [None] * len(lines)
    print(f"GETs of long.wav for {len(lines)} segments in 2 units: {len(gets)}")
    assert len(gets) == len(plan.units)


def test_segments_of_a_long_wav_come_from_one_ranged_read_and_decode_the_same(s3_bucket):
    import s3fs

    from pipeline.io.audio import Span, decode_audio
    from pipeline.spec import DecodeSpec

    endpoint, bucket = s3_bucket
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
    wav = _long_wav(300)  # 9.2 MiB: over wav_window.WINDOW_MIN_BYTES
    fs.pipe(f"{bucket}/corpus/long.wav", wav)
    spans = [(100.0 + 2.5 * i, 101.7 + 2.5 * i) for i in range(6)] + [(299.5, 300.5)]
    lines = [{"audio_filepath": "long.wav", "offset": s, "duration": e - s} for s, e in spans]
    fs.pipe(
        f"{bucket}/corpus/manifest.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()
    )
    with FaultProxy(endpoint) as proxy:
        spec = InputSpec(
            uri=f"s3://{bucket}/corpus",
            manifest=f"s3://{bucket}/corpus/manifest.jsonl",
            storage={"endpoint_url": proxy.url},
        )
        (unit,) = plan_input(spec, items_per_unit=8).units
        proxy.faults.requests.clear()
        got = [r for t in read_unit(unit, spec, MAX, 4) for r in t.to_pylist()]
        gets = [r for r in proxy.faults.requests if re.match(rf"GET /{bucket}/corpus/long.wav", r)]
    # Header + window, and the last span (past the end) fell back to the whole file.
    assert len(gets) == 3
    assert [r["span_cut"] for r in got] == [True] * 6 + [False]
    assert all(r["input_bytes"] < 2 * RATE * 2 + 100 for r in got[:6])
    for row, (s, e) in zip(got[:6], spans, strict=False):
        cut = decode_audio(row["audio_bytes"], target_rate=RATE, limits=DecodeSpec()).samples
        whole = decode_audio(wav, target_rate=RATE, limits=DecodeSpec(), span=Span(s, e)).samples
        np.testing.assert_array_equal(cut, whole)
