"""Encoding, keys and writes of synthesized audio."""

from __future__ import annotations

import io
import os
from pathlib import Path

import fsspec
import numpy as np
import pytest
import soundfile as sf

from pipeline.io.audio_out import audio_key, encode_audio, write_audio

RATE = 16_000


def chirp(seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.6 * np.sin(2 * np.pi * (200 + 800 * t) * t)).astype(np.float32)


@pytest.mark.parametrize(("fmt", "container"), [("flac", "FLAC"), ("wav", "WAV")])
def test_encode_round_trips_through_soundfile(fmt, container):
    x = chirp()
    data = encode_audio(x, RATE, fmt)
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        container,
        "PCM_16",
        RATE,
        1,
    )
    y, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == RATE and len(y) == len(x)
    assert np.abs(y - x).max() <= 1 / 32768 + 1e-7  # 16-bit quantisation only


def test_encode_clips_out_of_range_samples_instead_of_wrapping():
    y, _ = sf.read(io.BytesIO(encode_audio(np.array([1.7, -3.0, 0.5], np.float32), RATE)))
    assert y[0] == pytest.approx(1.0, abs=1e-4) and y[1] == pytest.approx(-1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.array([0.1, np.nan], np.float32), "NaN"),
        (np.zeros((2, 10), np.float32), "mono"),
    ],
)
def test_encode_refuses_bad_input(samples, message):
    with pytest.raises(ValueError, match=message):
        encode_audio(samples, RATE)
    with pytest.raises(ValueError, match="format"):
        encode_audio(chirp(), RATE, "mp3")  # type: ignore[arg-type]


def test_audio_key_is_deterministic_and_readable():
    key = audio_key("s3://bucket/out/tts", "book-1_ch2", "flac")
    assert key == audio_key("s3://bucket/out/tts/", "book-1_ch2", "flac")
    assert key.startswith("s3://bucket/out/tts/book-1_ch2-") and key.endswith(".flac")
    assert audio_key("/out", "book-1_ch2", "wav").endswith(".wav")


@pytest.mark.parametrize(
    "text_id",
    ["../../etc/passwd", "a/b/c", "/abs", "..", ".", "x\\..\\y", "naïve id ✓", "a" * 500, "%2e%2e"],
)
def test_audio_key_never_escapes_the_prefix(text_id):
    key = audio_key("out/audio", text_id, "flac")
    name = key.removeprefix("out/audio/")
    assert "/" not in name and ".." not in name and "\\" not in name
    assert len(name) <= 64 + 1 + 16 + len(".flac")
    assert os.path.normpath(key).startswith("out/audio/")


def test_ids_that_sanitise_alike_get_different_keys():
    assert audio_key("p", "a/b", "flac") != audio_key("p", "a_b", "flac")
    assert audio_key("p", "x", "flac") != audio_key("p", "X", "flac")


def test_audio_key_refuses_an_empty_id_and_unknown_formats():
    with pytest.raises(ValueError, match="empty"):
        audio_key("p", "", "flac")
    with pytest.raises(ValueError, match="format"):
        audio_key("p", "id", "ogg")  # type: ignore[arg-type]


def test_local_write_is_atomic_and_overwrites(tmp_path):
    fs = fsspec.filesystem("file")
    uri = audio_key(str(tmp_path / "audio"), "item-1", "flac")
    first = encode_audio(chirp(0.2), RATE)
    write_audio(fs, uri, first)
    second = encode_audio(chirp(0.4), RATE)
    write_audio(fs, uri, second)  # a re-run replaces the file, no second copy
    files = sorted(p.name for p in (tmp_path / "audio").iterdir())
    assert files == [os.path.basename(uri)]  # no temporary file left behind
    assert Path(uri).read_bytes() == second
    y, rate = sf.read(uri, dtype="float32")
    assert rate == RATE and len(y) == int(0.4 * RATE)


def test_failed_local_write_leaves_nothing(tmp_path, monkeypatch):
    fs = fsspec.filesystem("file")
    uri = str(tmp_path / "a.flac")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_audio(fs, uri, b"data")
    assert list(tmp_path.iterdir()) == []


def test_object_store_write_is_one_put():
    fs = fsspec.filesystem("memory")
    uri = audio_key("memory://bucket/tts", "item-1", "wav")
    data = encode_audio(chirp(0.1), RATE, "wav")
    write_audio(fs, uri, data)
    write_audio(fs, uri, data)
    assert fs.cat_file(uri) == data
    assert len(fs.find("/bucket/tts")) == 1
