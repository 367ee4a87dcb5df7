"""Decode one item's bytes into mono float32 at the model's rate, or say why not.

Untrusted audio is dangerous in quiet ways (docs/FACTS.md, "Audio decoding"): a
FLAC header can claim 2^36 frames and make a naive `sf.read` allocate 256 GiB, a
WAV or MP3 cut in half decodes without error, float WAVs carry NaN. So every
backend reads the header first, refuses what is too long before touching
samples, reads in blocks under a running cap, and the result is checked for
emptiness, truncation and non-finite values. Every failure is an
`AudioDecodeError` with an `ErrorCode`; "undecodable" lists what each backend
said (lhotse style).

soundfile (libsndfile) reads wav/flac/ogg/opus/mp3; PyAV (FFmpeg) is the fallback
for containers libsndfile cannot open (m4a/aac, webm, mp4, ...). The format is
taken from the content, never from a file name.

A `span` (start, end in seconds) decodes only that part of the file: a NeMo
manifest line with an offset or a lhotse supervision is one item covering a span.
soundfile seeks to the start; PyAV decodes from the start of the stream and stops
at the end of the span. Length limits then apply to the span, not the file. A span
may name the file's channels to keep (averaged); otherwise every channel is averaged.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from pipeline.errors import AudioDecodeError, ErrorCode
from pipeline.spec import DecodeSpec

# Frames per soundfile read. Public: io/segments.py reads spans in the same blocks, since
# libmpg123 (MP3) gives other samples for other read sizes.
BLOCK_FRAMES = 1 << 16
_MIB = 1 << 20
# FFmpeg demuxers we let PyAV probe. Anything else (playlists such as HLS or
# concat lists, which can make FFmpeg open other files or URLs, images, ...) is
# refused before its header is parsed.
_PYAV_FORMATS = "mov,mp4,m4a,matroska,webm,aac,mp3,ogg,wav,flac,asf,amr,caf,aiff,w64,au"


@dataclass(frozen=True)
class DecodedAudio:
    """One decoded item: mono float32 samples at `sample_rate` (the target rate)."""

    samples: np.ndarray
    sample_rate: int
    duration_s: float
    source_rate: int
    format: str  # "container/codec" the content turned out to be, e.g. "flac/pcm_16", "mov/aac"


@dataclass(frozen=True)
class _Raw:
    """A backend's output before checks and resampling: mono at the source rate."""

    samples: np.ndarray
    rate: int
    declared_frames: int | None  # what the header says, when it says anything
    format: str


@dataclass(frozen=True)
class Span:
    """The part of a file one item covers, in seconds from its start; `end` None: to the end.

    `channels` (positions in the file, for a lhotse supervision of a multi-channel
    recording) are averaged instead of every channel; a file without one of them fails
    with `invalid_input`, never a downmix of what it has."""

    start: float
    end: float | None = None
    channels: tuple[int, ...] | None = None

    def frames(self, rate: int) -> tuple[int, int | None]:
        first = round(self.start * rate)
        return first, None if self.end is None else max(first, round(self.end * rate))


def decode_audio(
    data: bytes,
    *,
    target_rate: int,
    limits: DecodeSpec,
    name: str = "",
    span: Span | None = None,
) -> DecodedAudio:
    """Decode `data` (or only its `span`) to mono float32 at `target_rate`, refusing what
    `limits` forbid.

    `name` (a path or member key) only makes the error messages say where.
    Raises `AudioDecodeError` with the matching `ErrorCode` on every failure.
    """
    where = f"{name}: " if name else ""
    _check_size(data, limits, where)
    if span is not None and span.end is not None:
        _refuse_long(span.end - span.start, limits, where, "the segment spans")
    attempts: list[str] = []
    raw = _try_soundfile(data, limits, where, attempts, span)
    if raw is None:
        raw = _try_pyav(data, limits, where, attempts, span)
    if raw is None:
        raise AudioDecodeError(
            ErrorCode.UNDECODABLE,
            f"{where}no backend could decode these {len(data)} bytes (corrupt or unsupported format)",
            tuple(attempts),
        )
    return _finish(raw, target_rate, limits, where)


def _check_size(data: bytes, limits: DecodeSpec, where: str) -> None:
    if len(data) == 0:
        raise AudioDecodeError(ErrorCode.EMPTY, f"{where}zero bytes of audio")
    if len(data) > limits.max_file_mb * _MIB:
        raise AudioDecodeError(
            ErrorCode.TOO_LARGE,
            f"{where}{len(data) / _MIB:.1f} MiB is more than decode.max_file_mb={limits.max_file_mb:g}",
        )


def _refuse_long(seconds: float, limits: DecodeSpec, where: str, what: str) -> None:
    if seconds > limits.max_duration_s:
        raise AudioDecodeError(
            ErrorCode.TOO_LONG,
            f"{where}{what} {seconds:.1f} s, over decode.max_duration_s={limits.max_duration_s:g}",
        )


def _try_soundfile(
    data: bytes, limits: DecodeSpec, where: str, attempts: list[str], span: Span | None = None
) -> _Raw | None:
    """libsndfile: header, cap, then blocks. None (and a note) if it cannot read it."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, frames, fmt = f.samplerate, f.frames, f"{f.format}/{f.subtype}".lower()
            if span is not None:
                return _read_span(f, span, limits, where, fmt)
            _refuse_long(frames / rate, limits, where, "header declares")
            samples = _read_blocks(f, int(limits.max_duration_s * rate) + 1, limits, where)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        # Raised at open for unknown formats, and mid-read for damaged streams
        # (e.g. a cut FLAC fails a seek); PyAV may still read those.
        attempts.append(f"soundfile: {_reason(exc)}")
        return None
    # libsndfile clamps a WAV's frame count to the bytes present, hiding a cut
    # file; the RIFF header still says how long it was meant to be.
    declared = _riff_declared_frames(data) if fmt.startswith("wav/") else None
    if fmt.startswith("ogg/") and not _ogg_ends(data):
        # An Ogg stream declares no length, and a cut one decodes short without error;
        # but its last page carries the end-of-stream flag, so a missing one says "cut".
        raise AudioDecodeError(
            ErrorCode.TRUNCATED,
            f"{where}the Ogg stream breaks off after {len(samples) / rate:.2f} s without its "
            "end-of-stream page (file cut short?)",
        )
    return _Raw(samples, rate, declared or frames, fmt)


def _read_span(f: sf.SoundFile, span: Span, limits: DecodeSpec, where: str, fmt: str) -> _Raw:
    """Seek to the span's first frame and read at most its frames (and the cap)."""
    rate = f.samplerate
    first, last = span.frames(rate)
    if first >= f.frames > 0:
        raise AudioDecodeError(
            ErrorCode.EMPTY,
            f"{where}the segment starts at {span.start:.2f} s but the file is "
            f"{f.frames / rate:.2f} s long",
        )
    _check_channels(span.channels, f.channels, where)
    if first:
        f.seek(first)
    cap = int(limits.max_duration_s * rate) + 1
    want = None if last is None else last - first
    samples = _read_blocks(f, cap, limits, where, want, span.channels)
    return _Raw(samples, rate, want, fmt)


def _read_blocks(
    f: sf.SoundFile,
    cap: int,
    limits: DecodeSpec,
    where: str,
    want: int | None = None,
    channels: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Read mono blocks until the end, `want` frames or the cap; never trust the header."""
    blocks, total = [], 0
    while want is None or total < want:
        n = BLOCK_FRAMES if want is None else min(BLOCK_FRAMES, want - total)
        block = f.read(n, dtype="float32", always_2d=True)
        if len(block) == 0:
            break
        blocks.append(_downmix(block, channels))
        total += len(block)
        if total > cap:
            _refuse_long(total / f.samplerate, limits, where, "stopped decoding at")
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _downmix(block: np.ndarray, channels: tuple[int, ...] | None = None) -> np.ndarray:
    """(frames, channels) -> (frames,) by the mean of `channels` (None: all), as float32."""
    if channels is not None:
        block = block[:, list(channels)]
    if block.shape[1] == 1:
        return block[:, 0]
    return block.mean(axis=1, dtype=np.float32)


def _check_channels(channels: tuple[int, ...] | None, present: int, where: str) -> None:
    """Refuse a span naming a channel the file does not have (a manifest that says more
    channels than the file holds): averaging what is there would be another signal."""
    if channels is not None and max(channels) >= present:
        raise AudioDecodeError(
            ErrorCode.INVALID_INPUT,
            f"{where}the item is the file's channel(s) {'+'.join(map(str, channels))} "
            f"(counted from 0) but the file has {present} channel{'s' if present != 1 else ''}",
        )


def _riff_declared_frames(data: bytes) -> int | None:
    """Frames a RIFF/WAVE header declares in its `data` chunk, None if unknown.

    Streaming writers put 0 or 0xFFFFFFFF in the size; those say nothing.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    for _ in range(64):  # a WAV has a handful of chunks; don't walk garbage forever
        if pos + 8 > len(data):
            return None
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt " and pos + 22 <= len(data):
            block_align = struct.unpack_from("<H", data, pos + 20)[0]
        elif chunk == b"data":
            known = block_align > 0 and size not in (0, 0xFFFFFFFF)
            return size // block_align if known else None
        pos += 8 + size + (size & 1)
    return None


def _ogg_ends(data: bytes) -> bool:
    """True if the last Ogg page is complete and flagged end-of-stream (RFC 3533)."""
    pos = data.rfind(b"OggS\x00")
    if pos < 0 or pos + 27 > len(data):
        return False
    segments = data[pos + 26]
    table = data[pos + 27 : pos + 27 + segments]
    complete = len(table) == segments and pos + 27 + segments + sum(table) <= len(data)
    return complete and bool(data[pos + 5] & 0x04)


def _try_pyav(
    data: bytes, limits: DecodeSpec, where: str, attempts: list[str], span: Span | None = None
) -> _Raw | None:
    """FFmpeg through PyAV, for containers libsndfile cannot open."""
    import av  # lazy: only m4a/webm/... need FFmpeg

    try:
        with av.open(io.BytesIO(data), options={"format_whitelist": _PYAV_FORMATS}) as container:
            if not container.streams.audio:
                attempts.append(f"pyav: no audio stream in {container.format.name} container")
                return None
            return _decode_stream(container, limits, where, attempts, span)
    except (av.FFmpegError, ValueError, OSError) as exc:  # not an audio container at all
        attempts.append(f"pyav: {_reason(exc)}")
        return None


def _decode_stream(
    container, limits: DecodeSpec, where: str, attempts: list[str], span: Span | None
) -> _Raw | None:
    """Decode the first audio stream (or its span) under the cap; a mid-stream error ends in
    a code."""
    import av

    stream = container.streams.audio[0]
    if stream.codec_context is None:
        # FFmpeg parsed the container but has no decoder for this codec (unknown WAV format
        # tags, damaged m4a sample descriptions): nothing to decode with.
        attempts.append(f"pyav: no decoder for the audio codec in this {container.format.name}")
        return None
    declared_s = _declared_seconds(container, stream)
    if span is not None:
        declared_s = None if span.end is None else span.end - span.start
    elif declared_s is not None:
        _refuse_long(declared_s, limits, where, "container declares")
    if span is not None:
        _check_channels(span.channels, stream.codec_context.channels, where)
    rate = stream.codec_context.sample_rate
    if not rate:
        attempts.append("pyav: the audio stream has no sample rate")
        return None
    resampler = av.AudioResampler(format="fltp")  # planar float, layout and rate kept
    blocks, total, seen = [], 0, 0
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                x = _downmix(out.to_ndarray().T, None if span is None else span.channels)
                rate = out.sample_rate  # HE-AAC may double it
                if span is not None:
                    x, seen = _in_span(x, seen, span, rate), seen + len(x)
                blocks.append(x)
                total += len(x)
            _refuse_long(total / rate, limits, where, "stopped decoding at")
            if span is not None and span.end is not None and seen >= span.end * rate:
                break
    except (av.FFmpegError, ValueError) as exc:
        return _damaged(total, rate, declared_s, limits, where, attempts, exc)
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    declared = None if declared_s is None else round(declared_s * rate)
    fmt = f"{container.format.name.split(',')[0]}/{stream.codec_context.name}"
    return _Raw(samples, rate, declared, fmt)


def _in_span(x: np.ndarray, seen: int, span: Span, rate: int) -> np.ndarray:
    """The samples of block `x` (starting at sample `seen` of the stream) inside `span`."""
    first, last = span.frames(rate)
    lo = min(max(first - seen, 0), len(x))
    hi = len(x) if last is None else min(max(last - seen, 0), len(x))
    return x[lo:hi]


def _declared_seconds(container, stream) -> float | None:
    """The stream's duration, else the container's; None when neither is known."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _damaged(
    total: int,
    rate: int,
    declared_s: float | None,
    limits: DecodeSpec,
    where: str,
    attempts: list[str],
    exc: Exception,
) -> None:
    """A stream that breaks off: TRUNCATED if far short of its header, else a failed attempt."""
    got = total / rate
    if declared_s and got < limits.truncation_tolerance * declared_s:
        raise AudioDecodeError(
            ErrorCode.TRUNCATED,
            f"{where}decoding broke off at {got:.2f} s of the declared {declared_s:.2f} s ({_reason(exc)})",
        )
    attempts.append(f"pyav: corrupt data after {got:.2f} s: {_reason(exc)}")
    return None


def _reason(exc: Exception) -> str:
    """An exception's own words, without soundfile's object repr or FFmpeg's errno."""
    if isinstance(exc, sf.LibsndfileError):
        return exc.error_string
    return getattr(exc, "strerror", None) or str(exc)


def _finish(raw: _Raw, target_rate: int, limits: DecodeSpec, where: str) -> DecodedAudio:
    """Check the decoded samples, then resample; the checks that apply to every backend."""
    x, rate = raw.samples, raw.rate
    if len(x) == 0:
        raise AudioDecodeError(
            ErrorCode.EMPTY, f"{where}{raw.format} decodes to zero samples (only a header?)"
        )
    if raw.declared_frames and len(x) < limits.truncation_tolerance * raw.declared_frames:
        raise AudioDecodeError(
            ErrorCode.TRUNCATED,
            f"{where}decodes to {len(x) / rate:.2f} s but its header declares "
            f"{raw.declared_frames / rate:.2f} s (file cut short?)",
        )
    bad = np.flatnonzero(~np.isfinite(x))
    if len(bad):
        raise AudioDecodeError(
            ErrorCode.NON_FINITE,
            f"{where}{len(bad)} NaN/Inf samples, the first at {bad[0] / rate:.3f} s",
        )
    if rate != target_rate:
        x = soxr.resample(x, rate, target_rate, quality="HQ")
    x = np.ascontiguousarray(x, dtype=np.float32)
    duration = len(x) / target_rate
    if duration < limits.min_duration_s:
        # There is no TOO_SHORT code: too short to be useful counts as empty.
        raise AudioDecodeError(
            ErrorCode.EMPTY,
            f"{where}{duration:.3f} s is shorter than decode.min_duration_s={limits.min_duration_s:g}",
        )
    return DecodedAudio(x, target_rate, duration, rate, raw.format)
