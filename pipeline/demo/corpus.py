"""Synthetic speech-like corpora for the demo job and the tests; no downloads.

The demo and the tests need audio in every shard layout we read (loose files
with a manifest, WebDataset tars, Hugging Face style Parquet), in every format
we decode, plus items that must fail with a known `ErrorCode`. Everything here
is deterministic per seed, so a test can say exactly what each item should
become. Writers take any fsspec filesystem, so the same corpus can go straight
to an S3 emulator.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import fsspec
import numpy as np
import soundfile as sf
import soxr

from pipeline.errors import ErrorCode

FORMATS = ("wav", "flac", "ogg", "opus", "mp3", "m4a")
RATES = (16000, 22050, 44100, 8000, 48000)
SECONDS_PER_CHAR = 0.08
_EDGE_S = 0.1  # silence before and after the "speech"
_SOUNDFILE = {  # format -> (libsndfile container, subtype)
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
_WRITE_FRAMES = 16384
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_VOWELS = {  # F1, F2, F3 in Hz, average adult voice
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
_WORD_LIST = """the a one two three four five red blue green yellow house river stone light
    morning evening quiet loud small large bird window garden city paper music
    road winter summer table water cold warm old new happy tired walks runs sings
    reads opens closes finds carries under over near behind slowly quickly today
    again never always little bright dark friend teacher sister brother"""
_WORDS = tuple(_WORD_LIST.split())
OK = "ok"


@dataclass(frozen=True)
class CorpusItem:
    """One item a builder wrote, and what reading + decoding it must give.

    `key` is the item's name without extension (a WebDataset key); `path` is the
    audio's path relative to the corpus root (files) or its member / struct path
    inside `shard`. `expected` is "ok" or the `ErrorCode` value it must fail with.
    """

    key: str
    path: str
    shard: str
    text: str | None
    expected: str
    duration_s: float
    rate: int
    format: str
    speaker: str | None = None


# ---------------------------------------------------------------- synthesis


def speechlike(text: str, rate: int, seed: int) -> np.ndarray:
    """Deterministic audio shaped like speech for `text`: float32 mono in [-0.9, 0.9].

    About `SECONDS_PER_CHAR` per character plus short edges: voiced syllables
    (harmonics of a falling, wavering pitch shaped by vowel formants), a noise
    burst at each syllable onset, pauses at spaces and a faint noise floor. Enough
    structure for length-sorting, VAD-ish and codec behaviour to be realistic.
    """
    rng = np.random.default_rng(seed)
    synth_rate = min(rate, 16000)  # nothing above 8 kHz matters; synthesise cheaply
    n = round((len(text) * SECONDS_PER_CHAR + 2 * _EDGE_S) * synth_rate)
    env, formants, bursts = _syllables(text, synth_rate, n, rng)
    f0 = _pitch(n, synth_rate, rng)
    x = _voice(f0, formants * rng.uniform(0.9, 1.15), synth_rate) * env + bursts
    if synth_rate != rate:
        x = soxr.resample(x, synth_rate, rate, quality="HQ")
    x = x + rng.normal(0.0, 0.002, len(x))
    x *= rng.uniform(0.5, 0.9) / max(float(np.abs(x).max()), 1e-9)
    return np.clip(x, -0.9, 0.9).astype(np.float32)


def _syllables(
    text: str, rate: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample amplitude envelope, formant tracks (n, 3) and consonant bursts."""
    env, bursts = np.zeros(n), np.zeros(n)
    centres, targets = [0], [_VOWELS["a"]]
    pos = 0
    for word in text.split(" "):
        start, end = (
            _EDGE_S + pos * SECONDS_PER_CHAR,
            _EDGE_S + (pos + len(word)) * SECONDS_PER_CHAR,
        )
        pos += len(word) + 1
        vowels = [c for c in word.lower() if c in _VOWELS] or [str(rng.choice(list(_VOWELS)))]
        bounds = np.linspace(start * rate, end * rate, len(vowels) + 1).astype(int)
        for (a, b), vowel in zip(zip(bounds[:-1], bounds[1:], strict=True), vowels, strict=True):
            env[a:b] = rng.uniform(0.6, 1.0) * np.sin(np.linspace(0, np.pi, b - a)) ** 0.6
            burst = min(b - a, int(0.02 * rate))
            bursts[a : a + burst] = rng.normal(0.0, 0.08, burst)
            centres.append((a + b) // 2)
            targets.append(_VOWELS[vowel])
    centres.append(n - 1)
    targets.append(targets[-1])
    t = np.arange(n)
    formants = np.stack([np.interp(t, centres, [f[j] for f in targets]) for j in range(3)], axis=1)
    return env, formants, bursts


def _pitch(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A falling pitch contour (declination) with a slow waver, in Hz per sample."""
    t = np.arange(n) / rate
    base = rng.uniform(95.0, 220.0)
    fall = np.linspace(1.12, 0.88, n)
    waver = 1 + 0.06 * np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * t + rng.uniform(0, 2 * np.pi))
    return base * fall * waver


def _voice(f0: np.ndarray, formants: np.ndarray, rate: int) -> np.ndarray:
    """Harmonics of `f0` below 4 kHz, each weighted by its distance to the formants.

    Gains move slowly, so they are computed every few milliseconds and
    interpolated, and sin(k * phase) comes from the Chebyshev recurrence: the
    demo corpus builds in seconds instead of tens of seconds.
    """
    t = np.arange(len(f0))
    grid = t[::64]
    phase = 2 * np.pi * np.cumsum(f0) / rate
    top = min(4000.0, 0.45 * rate)
    two_cos, prev, cur = 2 * np.cos(phase), np.zeros(len(f0)), np.sin(phase)
    out = np.zeros(len(f0))
    for k in range(1, int(top / f0.min()) + 1):
        fk = k * f0[grid]
        gain = sum(
            np.exp(-0.5 * ((fk - formants[grid, j]) / (90.0 + 40 * j)) ** 2) / (j + 1)
            for j in range(3)
        )
        out += np.interp(t, grid, np.where(fk < top, gain / k**0.5, 0.0)) * cur
        prev, cur = cur, two_cos * cur - prev
    return out


def sentence(rng: np.random.Generator, min_words: int = 3, max_words: int = 8) -> str:
    """A random sentence from the built-in word list."""
    words = rng.choice(_WORDS, size=int(rng.integers(min_words, max_words + 1)))
    return " ".join(str(w) for w in words)


def sentences(n: int, seed: int) -> list[str]:
    """`n` reference sentences, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [sentence(rng) for _ in range(n)]


# ---------------------------------------------------------------- encoding


def stored_rate(rate: int, fmt: str) -> int:
    """The rate a file of `fmt` actually holds (Opus only takes a few rates)."""
    if fmt != "opus" or rate in _OPUS_RATES:
        return rate
    return next((r for r in _OPUS_RATES if r >= rate), _OPUS_RATES[-1])


def encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """Encode (frames,) or (frames, channels) float samples as `fmt` (see `FORMATS`).

    Opus input is resampled to `stored_rate(rate, "opus")`.
    """
    x = np.asarray(samples, dtype=np.float32)
    if fmt == "m4a":
        return _encode_m4a(x.reshape(len(x), -1), rate)
    if fmt not in _SOUNDFILE:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out_rate = stored_rate(rate, fmt)
    if out_rate != rate:
        x = soxr.resample(x, rate, out_rate, quality="HQ")
    container, subtype = _SOUNDFILE[fmt]
    buf = io.BytesIO()
    channels = 1 if x.ndim == 1 else x.shape[1]
    with sf.SoundFile(buf, "w", out_rate, channels, format=container, subtype=subtype) as f:
        # One big write overflows libvorbis's stack (an alloca per pending sample)
        # and kills the process: https://github.com/libsndfile/libsndfile/issues/1095
        for start in range(0, len(x), _WRITE_FRAMES):
            f.write(x[start : start + _WRITE_FRAMES])
    return buf.getvalue()


def _encode_m4a(x: np.ndarray, rate: int) -> bytes:
    """AAC in an MP4 (ipod) container, through PyAV: libsndfile cannot write it."""
    import av

    layout = "mono" if x.shape[1] == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


# ---------------------------------------------------------------- broken items


@dataclass(frozen=True)
class BrokenSample:
    """Bytes that must fail to decode with `expected` under the default `DecodeSpec`."""

    name: str
    ext: str
    data: bytes
    expected: ErrorCode
    rate: int

    def item(self, key: str, path: str, shard: str) -> CorpusItem:
        return CorpusItem(key, path, shard, None, self.expected.value, 0.0, self.rate, self.ext)


def broken_samples(rate: int = 16000, seed: int = 0) -> list[BrokenSample]:
    """One item per silent hazard decoding must catch (FACTS.md, "Audio decoding")."""
    rng = np.random.default_rng(seed)
    x = speechlike("broken sample", rate, seed)
    wav, flac = encode(x, rate, "wav"), encode(x, rate, "flac")
    nan = x.copy()
    nan[len(nan) // 3 : len(nan) // 3 + 10] = np.nan
    buf = io.BytesIO()
    sf.write(buf, nan, rate, format="WAV", subtype="FLOAT")
    return [
        BrokenSample("empty", "wav", b"", ErrorCode.EMPTY, rate),
        BrokenSample("header_only", "wav", wav[:44], ErrorCode.EMPTY, rate),
        BrokenSample("cut_in_half", "wav", wav[: len(wav) // 2], ErrorCode.TRUNCATED, rate),
        BrokenSample("cut_flac", "flac", flac[: len(flac) // 3], ErrorCode.TRUNCATED, rate),
        BrokenSample("garbage", "wav", rng.bytes(4096), ErrorCode.UNDECODABLE, rate),
        BrokenSample(
            "huge_header", "flac", claim_flac_frames(flac, 2**36 - 1), ErrorCode.TOO_LONG, rate
        ),
        BrokenSample("nan", "wav", buf.getvalue(), ErrorCode.NON_FINITE, rate),
    ]


def claim_flac_frames(flac: bytes, frames: int) -> bytes:
    """Rewrite a FLAC's STREAMINFO total-samples field (36 bits) to `frames`.

    STREAMINFO follows "fLaC" and a 4-byte block header; total samples are the
    low 36 bits of the 8 bytes at offset 18 (after block sizes, frame sizes,
    and the 20/3/5 bits of rate, channels and bit depth).
    """
    if flac[:4] != b"fLaC" or flac[4] & 0x7F != 0 or not 0 <= frames < 2**36:
        raise ValueError("expected FLAC bytes starting with STREAMINFO and frames < 2**36")
    packed = int.from_bytes(flac[18:26], "big")
    packed = (packed & ~(2**36 - 1)) | frames
    return flac[:18] + packed.to_bytes(8, "big") + flac[26:]


# ---------------------------------------------------------------- corpora

Manifest = Literal["jsonl", "csv", "parquet"]


@dataclass(frozen=True)
class _Good:
    text: str
    speaker: str
    fmt: str
    rate: int
    data: bytes
    duration_s: float

    def item(self, key: str, path: str, shard: str) -> CorpusItem:
        return CorpusItem(
            key, path, shard, self.text, OK, self.duration_s, self.rate, self.fmt, self.speaker
        )


def _good_items(n: int, seed: int, formats: Sequence[str], rates: Sequence[int]) -> Iterator[_Good]:
    """`n` healthy items: a sentence, a voice, a format and a rate each."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        text, fmt, rate = sentence(rng), formats[i % len(formats)], int(rng.choice(rates))
        x = speechlike(text, rate, int(rng.integers(2**31)))
        speaker = f"spk{int(rng.integers(4))}"
        yield _Good(text, speaker, fmt, stored_rate(rate, fmt), encode(x, rate, fmt), len(x) / rate)


def _fs(fs: fsspec.AbstractFileSystem | None) -> fsspec.AbstractFileSystem:
    return fs if fs is not None else fsspec.filesystem("file")


def _put(fs: fsspec.AbstractFileSystem, root: str, rel: str, data: bytes) -> None:
    path = f"{root.rstrip('/')}/{rel}"
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.pipe_file(path, data)


def build_files_corpus(
    root: str,
    *,
    n_items: int,
    seed: int = 0,
    formats: Sequence[str] = FORMATS,
    rates: Sequence[int] = RATES,
    broken: bool = False,
    manifest: Manifest | None = "jsonl",
    fs: fsspec.AbstractFileSystem | None = None,
) -> list[CorpusItem]:
    """Loose audio files under `root/<speaker>/` plus `root/manifest.<ext>`.

    The manifest has `path` (relative to root), `text` and `speaker`. With
    `broken`, `root/broken/` holds one file per `broken_samples` hazard, and a
    manifest also names a file that does not exist (MISSING_AUDIO).
    """
    fs, items = _fs(fs), []
    for i, g in enumerate(_good_items(n_items, seed, formats, rates)):
        path = f"{g.speaker}/{i:06d}.{g.fmt}"
        _put(fs, root, path, g.data)
        items.append(g.item(path.rsplit(".", 1)[0], path, path))
    for b in broken_samples(seed=seed) if broken else ():
        path = f"broken/{b.name}.{b.ext}"
        _put(fs, root, path, b.data)
        items.append(b.item(f"broken/{b.name}", path, path))
    if manifest is not None:
        if broken:
            gone = BrokenSample("gone", "wav", b"", ErrorCode.MISSING_AUDIO, 16000)
            items.append(gone.item("missing/gone", "missing/gone.wav", "missing/gone.wav"))
        rows = [{"path": it.path, "text": it.text, "speaker": it.speaker} for it in items]
        _put(fs, root, f"manifest.{manifest}", _manifest_bytes(rows, manifest))
    return items


def _manifest_bytes(rows: list[dict], kind: Manifest) -> bytes:
    if kind == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    if kind == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["path", "text", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().encode()
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        return buf.getvalue()
    raise ValueError(f"unknown manifest kind {kind!r}; expected jsonl, csv or parquet")


_Shard = tuple[str, list[tuple[CorpusItem, bytes]]]


def _shards(
    n_shards: int,
    per_shard: int,
    ext: str,
    seed: int,
    formats: Sequence[str],
    rates: Sequence[int],
    broken: bool,
) -> Iterator[_Shard]:
    """Shard names with their items and bytes; the broken samples go in the first."""
    goods = _good_items(n_shards * per_shard, seed, formats, rates)
    for s in range(n_shards):
        shard, entries = f"shard-{s:06d}.{ext}", []
        for i in range(s * per_shard, (s + 1) * per_shard):
            g, key = next(goods), f"{i:06d}"
            entries.append((g.item(key, f"{key}.{g.fmt}", shard), g.data))
        for b in broken_samples(seed=seed) if broken and s == 0 else ():
            entries.append((b.item(b.name, f"{b.name}.{b.ext}", shard), b.data))
        yield shard, entries


def build_webdataset_corpus(
    root: str,
    *,
    n_shards: int,
    items_per_shard: int,
    seed: int = 0,
    formats: Sequence[str] = ("flac",),
    rates: Sequence[int] = (16000,),
    broken: bool = False,
    fs: fsspec.AbstractFileSystem | None = None,
) -> list[CorpusItem]:
    """WebDataset tar shards `root/shard-000000.tar`, ... with `key.<fmt>` + `key.txt`.

    Every third item carries `key.json` ({"text", "speaker"}) instead of a txt.
    With `broken`, the first shard also holds the `broken_samples` (no text) and
    one more shard is not a tar at all (one SHARD_CORRUPT item with an empty key).
    """
    fs, items = _fs(fs), []
    for shard, entries in _shards(n_shards, items_per_shard, "tar", seed, formats, rates, broken):
        members = []
        for item, data in entries:
            members.append((item.path, data))
            if item.text is not None and int(item.key) % 3 == 2:
                meta = {"text": item.text, "speaker": item.speaker}
                members.append((f"{item.key}.json", json.dumps(meta).encode()))
            elif item.text is not None:
                members.append((f"{item.key}.txt", item.text.encode()))
            items.append(item)
        _put(fs, root, shard, _tar_bytes(members))
    if broken:
        shard = f"shard-{n_shards:06d}.tar"
        _put(fs, root, shard, np.random.default_rng(seed).bytes(2048))
        corrupt = BrokenSample("", "tar", b"", ErrorCode.SHARD_CORRUPT, 0)
        items.append(corrupt.item("", "", shard))
    return items


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A tar of `members` in order, with fixed metadata so the bytes are reproducible."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_parquet_corpus(
    root: str,
    *,
    n_shards: int,
    items_per_shard: int,
    seed: int = 0,
    formats: Sequence[str] = ("flac", "wav"),
    rates: Sequence[int] = (16000,),
    broken: bool = False,
    fs: fsspec.AbstractFileSystem | None = None,
) -> list[CorpusItem]:
    """Parquet shards `root/shard-000000.parquet`, ... in the Hugging Face layout.

    Columns: `audio` struct{bytes: binary, path: string} (what `datasets.Audio`
    writes), `text`, `speaker`. With `broken`, the first shard also holds the
    `broken_samples` and one row whose audio is null (MISSING_AUDIO).
    """
    fs, items = _fs(fs), []
    for shard, entries in _shards(
        n_shards, items_per_shard, "parquet", seed, formats, rates, broken
    ):
        rows = [
            {"audio": {"bytes": data, "path": it.path}, "text": it.text, "speaker": it.speaker}
            for it, data in entries
        ]
        items += [it for it, _ in entries]
        if broken and shard.startswith("shard-000000."):
            rows.append({"audio": None, "text": None, "speaker": None})
            no_audio = BrokenSample("no_audio", "", b"", ErrorCode.MISSING_AUDIO, 0)
            items.append(no_audio.item("no_audio", "", shard))
        _put(fs, root, shard, _hf_parquet_bytes(rows))
    return items


def _hf_parquet_bytes(rows: list[dict]) -> bytes:
    """Rows as Parquet with the schema metadata `datasets` reads its features from."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    audio = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
    fields = [
        pa.field("audio", audio),
        pa.field("text", pa.string()),
        pa.field("speaker", pa.string()),
    ]
    text = {"dtype": "string", "_type": "Value"}
    features = {"audio": {"_type": "Audio"}, "text": text, "speaker": text}
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields, metadata=meta)), buf)
    return buf.getvalue()
