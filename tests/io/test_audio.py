"""decode_audio: every format and rate to 16 kHz, downmix, and every refusal path."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
import soundfile as sf

from pipeline.errors import AudioDecodeError, ErrorCode
from pipeline.io.audio import Span, _try_pyav, decode_audio
from pipeline.spec import DecodeSpec
from pipeline.testing.corpus import FORMATS, claim_flac_frames, encode, stored_rate

TARGET = 16000
LIMITS = DecodeSpec()
AAC_FRAME = 1024  # AAC decodes whole frames: up to one frame of padding at the end


def sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def decode(data: bytes, **limits) -> object:
    return decode_audio(data, target_rate=TARGET, limits=DecodeSpec(**limits), name="clip")


def refused(data: bytes, **limits) -> AudioDecodeError:
    with pytest.raises(AudioDecodeError) as info:
        decode(data, **limits)
    return info.value


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def pyav_encode(
    x: np.ndarray, rate: int, container: str, codec: str, seekable: bool = True
) -> bytes:
    """Encode mono `x` with FFmpeg; a non-seekable sink leaves no duration in the header."""

    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, b) -> int:
            self.data += bytes(b)
            return len(b)

    sink = io.BytesIO() if seekable else Sink()
    with av.open(sink, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(x[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return sink.getvalue() if seekable else bytes(sink.data)


# ---------------------------------------------------------------- formats and rates


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_and_rate_decodes_to_16k_mono(fmt, rate):
    x = sine(rate, 1.0)
    out = decode(encode(x, rate, fmt))
    assert out.sample_rate == TARGET and out.samples.dtype == np.float32 and out.samples.ndim == 1
    assert out.source_rate == stored_rate(rate, fmt)
    slack = AAC_FRAME / out.source_rate if fmt == "m4a" else 0.0
    assert 1.0 - 0.002 <= out.duration_s <= 1.0 + slack + 0.002
    assert len(out.samples) == pytest.approx(out.duration_s * TARGET, abs=1)
    assert peak_hz(out.samples, TARGET) == pytest.approx(440, abs=3)
    rms = float(np.sqrt(np.mean(out.samples[800:-800] ** 2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.15)


def test_lossless_same_rate_round_trip_is_exact():
    x = sine(TARGET, 0.5)
    for fmt in ("wav", "flac"):
        out = decode(encode(x, TARGET, fmt))
        np.testing.assert_allclose(out.samples, x, atol=1 / 32768)
        assert out.format == f"{fmt}/pcm_16"


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [
        ("webm", "libopus", 48000),
        ("adts", "aac", 22050),
        ("ipod", "aac", 44100),
        ("matroska", "flac", 16000),
    ],
)
def test_containers_libsndfile_cannot_open_go_through_pyav(container, codec, rate):
    data = pyav_encode(sine(rate, 1.0), rate, container, codec)
    with pytest.raises(sf.LibsndfileError):
        sf.info(io.BytesIO(data))
    out = decode(data)
    assert out.source_rate == rate and out.duration_s == pytest.approx(1.0, abs=0.15)
    assert peak_hz(out.samples, TARGET) == pytest.approx(440, abs=3)


def test_stereo_is_downmixed_by_channel_mean():
    left, right = sine(TARGET, 0.5, 440), sine(TARGET, 0.5, 1000, amp=0.3)
    stereo = np.stack([left, right], axis=1)
    for fmt in ("wav", "flac"):
        out = decode(encode(stereo, TARGET, fmt))
        np.testing.assert_allclose(out.samples, (left + right) / 2, atol=1 / 16384)


@pytest.mark.parametrize(("sign", "expected_rms"), [(1, 0.5 / np.sqrt(2)), (-1, 0.0)])
def test_pyav_downmix_is_the_mean_too(sign, expected_rms):
    x = sine(TARGET, 1.0)
    out = decode(encode(np.stack([x, sign * x], axis=1), TARGET, "m4a"))
    assert out.samples.ndim == 1
    assert float(np.sqrt(np.mean(out.samples**2))) == pytest.approx(expected_rms, abs=0.02)


def test_values_above_one_pass_through_unclipped():
    buf = io.BytesIO()
    sf.write(buf, sine(TARGET, 0.2, amp=1.5), TARGET, format="WAV", subtype="FLOAT")
    out = decode(buf.getvalue())
    assert float(np.abs(out.samples).max()) == pytest.approx(1.5, abs=1e-3)


def test_silence_is_audio_not_empty():
    out = decode(encode(np.zeros(8000, np.float32), 8000, "flac"))
    assert out.duration_s == pytest.approx(1.0) and not out.samples.any()


# ---------------------------------------------------------------- refusals


def test_zero_bytes_are_empty():
    err = refused(b"")
    assert err.code is ErrorCode.EMPTY and "clip" in str(err)


def test_too_many_bytes_are_refused_before_decoding():
    data = encode(sine(TARGET, 1.0), TARGET, "wav")  # ~31 KiB
    err = refused(data, max_file_mb=0.01)
    assert err.code is ErrorCode.TOO_LARGE and "max_file_mb" in str(err)


def test_long_header_is_refused_without_reading_samples(monkeypatch):
    reads = []
    real_read = sf.SoundFile.read
    monkeypatch.setattr(
        sf.SoundFile, "read", lambda self, *a, **k: reads.append(1) or real_read(self, *a, **k)
    )
    data = encode(np.zeros(8000 * 60, np.float32), 8000, "wav")
    err = refused(data, max_duration_s=5)
    assert err.code is ErrorCode.TOO_LONG and "header declares 60.0 s" in str(err)
    assert reads == []
    assert decode(data, max_duration_s=61).duration_s == pytest.approx(60.0)
    assert reads, "the spy must see reads when decoding is allowed"


def test_flac_claiming_2_to_the_36_frames_never_allocates_them():
    flac = encode(sine(TARGET, 1.0), TARGET, "flac")
    huge = claim_flac_frames(flac, 2**36 - 1)
    assert sf.info(io.BytesIO(huge)).frames == 2**36 - 1
    assert refused(huge).code is ErrorCode.TOO_LONG
    # Allowed by the cap, it must read the real second and call it truncated.
    assert refused(huge, max_duration_s=1e7).code is ErrorCode.TRUNCATED


def test_container_duration_is_checked_before_decoding():
    data = encode(sine(TARGET, 3.0), TARGET, "m4a")
    err = refused(data, max_duration_s=1)
    assert err.code is ErrorCode.TOO_LONG and "container declares" in str(err)


def test_running_cap_stops_a_stream_without_a_declared_duration():
    data = pyav_encode(sine(48000, 3.0), 48000, "webm", "libopus", seekable=False)
    with av.open(io.BytesIO(data)) as c:
        assert c.duration is None and c.streams.audio[0].duration is None
    err = refused(data, max_duration_s=1)
    assert err.code is ErrorCode.TOO_LONG and "stopped decoding at" in str(err)
    assert decode(data).duration_s == pytest.approx(3.0, abs=0.05)


def test_header_only_wav_is_empty():
    wav = encode(sine(TARGET, 1.0), TARGET, "wav")
    assert refused(wav[:44]).code is ErrorCode.EMPTY


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_file_cut_in_half_is_truncated(fmt):
    data = encode(sine(TARGET, 2.0), TARGET, fmt)
    err = refused(data[: len(data) // 2 if fmt != "flac" else len(data) // 3])
    assert err.code is ErrorCode.TRUNCATED and "declare" in str(err)


def test_slightly_short_wav_is_within_tolerance():
    data = encode(sine(TARGET, 1.0), TARGET, "wav")
    out = decode(data[: int(len(data) * 0.8)])
    assert out.duration_s == pytest.approx(0.8, abs=0.01)
    assert (
        refused(data[: int(len(data) * 0.8)], truncation_tolerance=0.9).code is ErrorCode.TRUNCATED
    )


def test_streaming_wav_with_unknown_size_is_not_truncated():
    wav = bytearray(encode(sine(TARGET, 1.0), TARGET, "wav"))
    at = wav.index(b"data") + 4
    wav[at : at + 4] = struct.pack("<I", 0xFFFFFFFF)
    assert decode(bytes(wav)).duration_s == pytest.approx(1.0)


def test_garbage_says_what_each_backend_tried():
    err = refused(np.random.default_rng(0).bytes(5000))
    assert err.code is ErrorCode.UNDECODABLE
    assert [a.split(":")[0] for a in err.attempts] == ["soundfile", "pyav"]
    assert "soundfile: Format not recognised" in str(err) and "0x" not in str(err)


def test_demuxers_outside_the_allow_list_are_refused():
    ts = pyav_encode(sine(TARGET, 1.0), TARGET, "mpegts", "aac")
    with av.open(io.BytesIO(ts)) as c:  # FFmpeg itself would read it
        assert c.format.name == "mpegts"
    assert refused(ts).code is ErrorCode.UNDECODABLE


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(bad):
    x = sine(TARGET, 0.5)
    x[1234] = bad
    buf = io.BytesIO()
    sf.write(buf, x, TARGET, format="WAV", subtype="FLOAT")
    err = refused(buf.getvalue())
    assert err.code is ErrorCode.NON_FINITE and "0.077 s" in str(err)


def test_shorter_than_min_duration_counts_as_empty():
    data = encode(sine(TARGET, 0.2), TARGET, "flac")
    err = refused(data, min_duration_s=0.5)
    assert err.code is ErrorCode.EMPTY and "min_duration_s" in str(err)
    assert decode(data, min_duration_s=0.1).duration_s == pytest.approx(0.2)


def _wav_with_format_tag(tag: int) -> bytes:
    data = b"\x00\x01" * 1000
    fmt = struct.pack("<HHIIHH", tag, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("tag", [0x0000, 0x1234, 0xFFFF])
def test_codec_ffmpeg_cannot_decode_is_undecodable_not_a_crash(tag):
    # FFmpeg opens these WAVs but gives their stream no codec context (it used to raise
    # AttributeError out of decode_audio).
    err = refused(_wav_with_format_tag(tag))
    assert err.code is ErrorCode.UNDECODABLE
    assert "pyav: no decoder for the audio codec" in str(err)


@pytest.mark.parametrize("fmt", ["ogg", "opus"])
@pytest.mark.parametrize("share", [0.3, 0.9])
def test_an_ogg_stream_cut_short_is_truncated_not_silently_short(fmt, share):
    rng = np.random.default_rng(0)
    x = (sine(TARGET, 8.0) + 0.05 * rng.standard_normal(8 * TARGET)).astype(np.float32)
    whole = encode(x, TARGET, fmt)
    assert decode(whole).duration_s == pytest.approx(8.0, abs=0.05)  # complete: no complaint
    err = refused(whole[: int(len(whole) * share)])
    assert err.code is ErrorCode.TRUNCATED and "end-of-stream page" in str(err)


def test_a_zip_named_wav_is_undecodable():
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("inner.wav", encode(sine(TARGET, 0.2), TARGET, "wav"))
    assert refused(buf.getvalue()).code is ErrorCode.UNDECODABLE


def _steps(rate: int) -> np.ndarray:
    """Three seconds whose value says which second a sample comes from (0.1, 0.2, 0.3)."""
    return np.concatenate([np.full(rate, 0.1 * (i + 1), np.float32) for i in range(3)])


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_span_decodes_only_that_part_of_the_file(fmt):
    buf = io.BytesIO()
    sf.write(buf, _steps(TARGET), TARGET, format=fmt.upper(), subtype="PCM_16")
    out = decode_audio(buf.getvalue(), target_rate=TARGET, limits=LIMITS, span=Span(1.0, 2.0))
    assert len(out.samples) == TARGET
    assert np.allclose(out.samples, 0.2, atol=1e-3)


def test_a_span_through_pyav_keeps_only_its_samples():
    data = pyav_encode(_steps(TARGET), TARGET, "wav", "pcm_f32le")
    raw = _try_pyav(data, LIMITS, "", [], Span(1.5, 2.5))
    assert abs(len(raw.samples) - TARGET) <= 1
    assert np.allclose(raw.samples[: TARGET // 2 - 10], 0.2) and np.allclose(raw.samples[-10:], 0.3)


def test_a_span_of_a_file_longer_than_the_limit_is_decoded():
    buf = io.BytesIO()
    sf.write(buf, _steps(TARGET), TARGET, format="FLAC")
    out = decode_audio(
        buf.getvalue(),
        target_rate=TARGET,
        limits=DecodeSpec(max_duration_s=1.5),
        span=Span(2.0, 3.0),
    )
    assert np.allclose(out.samples, 0.3, atol=1e-3)
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(
            buf.getvalue(),
            target_rate=TARGET,
            limits=DecodeSpec(max_duration_s=1.5),
            span=Span(0.0, 2.0),
        )
    assert info.value.code == ErrorCode.TOO_LONG


def test_a_span_past_the_end_of_the_file_is_an_error():
    buf = io.BytesIO()
    sf.write(buf, _steps(TARGET), TARGET, format="WAV")
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(buf.getvalue(), target_rate=TARGET, limits=LIMITS, span=Span(5.0, 6.0))
    assert info.value.code == ErrorCode.EMPTY
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(buf.getvalue(), target_rate=TARGET, limits=LIMITS, span=Span(2.5, 9.0))
    assert info.value.code == ErrorCode.TRUNCATED


@pytest.mark.parametrize("fmt", ["wav", "flac", "m4a"])
def test_a_span_with_channels_keeps_only_those(fmt):
    left, right = sine(TARGET, 1.0, 440), sine(TARGET, 1.0, 1000, amp=0.3)
    data = encode(np.stack([left, right], axis=1), TARGET, fmt)
    hz = [
        peak_hz(decode_audio(data, target_rate=TARGET, limits=LIMITS, span=s).samples, TARGET)
        for s in (Span(0.0, None, (0,)), Span(0.0, None, (1,)))
    ]
    assert hz == [pytest.approx(440, abs=5), pytest.approx(1000, abs=5)]
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(data, target_rate=TARGET, limits=LIMITS, span=Span(0.0, 0.5, (2,)))
    assert info.value.code == ErrorCode.INVALID_INPUT and "2 channels" in str(info.value)
