"""Segments cut by the read step (pipeline/io/segments.py) decode exactly as the span of
the whole file does; what cannot be cut exactly is left whole."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from pipeline.columns import AUDIO, ITEM_SCHEMA
from pipeline.io.audio import Span, decode_audio
from pipeline.io.segments import cut_span
from pipeline.spec import DecodeSpec
from pipeline.stages.decode import DecodeStage
from pipeline.testing.corpus import encode
from tests.io import corpora
from tests.io.wild import rows

RATE = 16000
LIMITS = DecodeSpec()
MAX = 64 * 2**20


def _stereo(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(round(RATE * seconds)) / RATE
    return np.stack([0.3 * np.sin(2 * np.pi * 330 * t), 0.2 * np.sin(2 * np.pi * 950 * t)], 1)


def _file(fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _stereo().astype(np.float32), RATE, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [
        ("WAV", "PCM_16"),
        ("WAV", "FLOAT"),
        ("WAV", "PCM_24"),
        ("FLAC", "PCM_16"),
        ("FLAC", "PCM_24"),
        ("OGG", None),
        ("MP3", None),
    ],
)
@pytest.mark.parametrize("channels", [None, (1,)])
def test_a_cut_decodes_to_the_samples_of_the_span(fmt, subtype, channels):
    data = _file(fmt, subtype)
    for start, end in ((0.5, 1.75), (0.0, 3.0), (2.0, None), (1 / 3, 2 / 3)):
        cut = cut_span(data, start, end, MAX)
        assert cut is not None
        if fmt in ("WAV", "FLAC"):  # a lossy span is cut as float32: larger than its bytes
            assert len(cut) < len(data) or (start, end) == (0.0, 3.0)
        whole = decode_audio(data, target_rate=RATE, limits=LIMITS, span=Span(start, end, channels))
        alone = decode_audio(
            cut, target_rate=RATE, limits=LIMITS, span=channels and Span(0.0, None, channels)
        )
        np.testing.assert_array_equal(alone.samples, whole.samples)


def test_what_cannot_be_cut_exactly_is_left_whole():
    data = _file("WAV", "PCM_16")
    assert cut_span(data, 2.5, 4.0, MAX) is None  # ends past the file: decode says so
    assert cut_span(data, 5.0, 6.0, MAX) is None
    assert cut_span(data, 0.0, 3.0, 1000) is None  # larger than decode.max_file_mb
    assert cut_span(encode(_stereo().astype(np.float32), RATE, "m4a"), 0.0, 1.0, MAX) is None
    assert cut_span(b"not audio", 0.0, 1.0, MAX) is None


def test_segment_rows_carry_their_span_and_decode_like_the_whole_file(tmp_path):
    audio = corpora.steps_wav(tmp_path / "long.wav")
    manifest = corpora.nemo_manifest(
        tmp_path / "manifest.json",
        [
            {"audio_filepath": "long.wav", "duration": 1.0, "offset": 0.0, "text": "one"},
            {"audio_filepath": "long.wav", "duration": 1.5, "offset": 1.5, "text": "two"},
            {"audio_filepath": "long.wav", "duration": 2.0, "offset": 2.5, "text": "past"},
            {"audio_filepath": str(audio), "duration": 3.0, "text": "all"},
        ],
    )
    got = rows(uri=str(tmp_path), manifest=str(manifest))
    assert [r["span_cut"] for r in got] == [True, True, False, False]
    size = audio.stat().st_size
    assert [r["input_bytes"] for r in got] == [
        pytest.approx(RATE * 4, abs=100),
        pytest.approx(RATE * 6, abs=100),
        size,
        size,
    ]
    out = DecodeStage(DecodeSpec(), RATE)(pa.Table.from_pylist(got, schema=ITEM_SCHEMA))
    decoded = out.column(AUDIO).to_pylist()
    np.testing.assert_array_equal(decoded[0], np.full(RATE, 0.1, np.float32))
    np.testing.assert_array_equal(decoded[1][: RATE // 2], np.full(RATE // 2, 0.2, np.float32))
    assert out.column("error_code").to_pylist() == [None, None, "truncated", None]


def test_a_window_over_max_file_mb_is_not_read():
    from pipeline.io.wav_window import read_window

    wav = _file("WAV", "PCM_16")  # 3 s stereo: 4 bytes a frame
    reads = []

    def read_range(start: int, end: int) -> bytes:
        reads.append((start, end))
        return wav[start:end]

    window = read_window(read_range, len(wav), [(0.5, 1.0), (2.0, 2.5)], MAX)
    assert window is not None and len(reads) == 2
    cut = cut_span(window.data, 2.0, 2.5, MAX, window.first)
    assert cut == cut_span(wav, 2.0, 2.5, MAX)
    reads.clear()
    assert read_window(read_range, len(wav), [(0.5, 1.0), (2.0, 2.5)], RATE * 6) is None
    assert len(reads) == 1  # the header only: the 2 s window is over the limit
