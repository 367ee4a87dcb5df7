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

from pipeline.errors import ErrorCode
from pipeline.testing.synth import (  # noqa: F401  (re-exported for callers of the corpus API)
    FORMATS,
    RATES,
    SECONDS_PER_CHAR,
    encode,
    sentence,
    sentences,
    speechlike,
    stored_rate,
)

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
    """One item per silent hazard decoding must catch (docs/FACTS.md, "Audio decoding")."""
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
