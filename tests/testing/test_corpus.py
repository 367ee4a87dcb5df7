"""The synthetic corpora: deterministic, every layout readable, every item's outcome true."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.errors import AudioDecodeError
from pipeline.io.audio import decode_audio
from pipeline.spec import DecodeSpec
from pipeline.testing import corpus, synth
from pipeline.testing.corpus import (
    FORMATS,
    OK,
    CorpusItem,
    broken_samples,
    build_files_corpus,
    build_parquet_corpus,
    build_webdataset_corpus,
    claim_flac_frames,
    encode,
    sentences,
    speechlike,
    stored_rate,
)


def outcome(data: bytes, item: CorpusItem) -> str:
    """What decoding gives: "ok" (and the right length) or the error code's value."""
    try:
        out = decode_audio(data, target_rate=16000, limits=DecodeSpec(), name=item.path)
    except AudioDecodeError as exc:
        return exc.code.value
    slack = 1024 / item.rate if item.format == "m4a" else 0.0  # AAC pads to whole frames
    assert item.duration_s - 0.002 <= out.duration_s <= item.duration_s + slack + 0.002, item
    assert out.source_rate == item.rate, item
    return OK


# ---------------------------------------------------------------- synthesis


def test_speechlike_is_deterministic_bounded_and_scales_with_text():
    a = speechlike("the river is quiet today", 16000, seed=3)
    assert a.dtype == np.float32 and a.ndim == 1
    np.testing.assert_array_equal(a, speechlike("the river is quiet today", 16000, seed=3))
    assert not np.array_equal(a, speechlike("the river is quiet today", 16000, seed=4))
    assert float(np.abs(a).max()) <= 0.9 and float(np.abs(a).max()) > 0.3
    for text in ("hi", "a much longer sentence with many more characters"):
        x = speechlike(text, 22050, seed=0)
        assert len(x) / 22050 == pytest.approx(len(text) * corpus.SECONDS_PER_CHAR + 0.2, abs=1e-3)


def test_speechlike_has_syllables_and_pauses():
    rate, text = 16000, "alpha bravo"
    x = speechlike(text, rate, seed=1)

    def rms(start_s: float, end_s: float) -> float:
        return float(np.sqrt(np.mean(x[int(start_s * rate) : int(end_s * rate)] ** 2)))

    edge = rms(0.0, 0.08)
    first_word = rms(0.1, 0.1 + 5 * corpus.SECONDS_PER_CHAR)
    assert first_word > 10 * edge
    # The voiced part has a pitch in the human range: autocorrelation peak at 2.5-12 ms.
    seg = x[int(0.2 * rate) : int(0.3 * rate)]
    ac = np.correlate(seg, seg, "full")[len(seg) - 1 :]
    lag = int(np.argmax(ac[40:200])) + 40
    assert 60 < rate / lag < 400


def test_sentences_are_deterministic_and_from_the_word_list():
    first = sentences(20, seed=7)
    assert first == sentences(20, seed=7) and first != sentences(20, seed=8)
    assert all(3 <= len(s.split()) <= 8 for s in first)
    assert {w for s in first for w in s.split()} <= set(synth._WORDS)


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_produces_the_named_format(fmt):
    x = speechlike("one two", 22050, seed=0)
    data = encode(x, 22050, fmt)
    if fmt == "m4a":
        assert data[4:8] == b"ftyp"
    else:
        info = sf.info(io.BytesIO(data))
        assert info.format == synth._SOUNDFILE[fmt][0] and info.subtype == synth._SOUNDFILE[fmt][1]
        assert info.samplerate == stored_rate(22050, fmt)


def test_long_ogg_is_written_in_blocks():
    # One sf.write of this many frames overflows libvorbis's 8 MiB stack (segfault):
    # https://github.com/libsndfile/libsndfile/issues/1095
    data = encode(np.zeros(2_200_000, np.float32), 48000, "ogg")
    assert sf.info(io.BytesIO(data)).frames == 2_200_000


def test_opus_rates_and_unknown_formats():
    assert [stored_rate(r, "opus") for r in (8000, 11025, 22050, 44100, 96000)] == [
        8000,
        12000,
        24000,
        48000,
        48000,
    ]
    assert stored_rate(22050, "mp3") == 22050
    with pytest.raises(ValueError, match="unknown format"):
        encode(np.zeros(10, np.float32), 16000, "aiff")


def test_claim_flac_frames_rewrites_only_the_count():
    flac = encode(np.zeros(1600, np.float32), 16000, "flac")
    info = sf.info(io.BytesIO(claim_flac_frames(flac, 123456)))
    assert (info.frames, info.samplerate, info.channels) == (123456, 16000, 1)
    with pytest.raises(ValueError):
        claim_flac_frames(b"RIFF" + flac[4:], 5)


@pytest.mark.parametrize("sample", broken_samples(), ids=lambda b: b.name)
def test_each_broken_sample_fails_with_its_code(sample):
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(sample.data, target_rate=16000, limits=DecodeSpec(), name=sample.name)
    assert info.value.code is sample.expected


# ---------------------------------------------------------------- corpora


@pytest.fixture(scope="module")
def files_corpus(tmp_path_factory) -> tuple[Path, list[CorpusItem]]:
    root = tmp_path_factory.mktemp("files")
    return root, build_files_corpus(str(root), n_items=6, seed=1, broken=True)


def test_files_corpus_every_item_has_its_outcome(files_corpus):
    root, items = files_corpus
    assert {it.format for it in items if it.expected == OK} == set(FORMATS)
    assert len({it.rate for it in items if it.expected == OK}) >= 3
    for item in items:
        path = root / item.path
        if item.expected == "missing_audio":
            assert not path.exists()
            continue
        assert outcome(path.read_bytes(), item) == item.expected
    assert all(it.text is None for it in items if it.expected != OK)
    assert all(it.text and it.speaker for it in items if it.expected == OK)


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_manifest_lists_every_item(tmp_path, kind):
    items = build_files_corpus(
        str(tmp_path),
        n_items=3,
        seed=2,
        formats=("flac", "wav"),
        rates=(16000,),
        broken=True,
        manifest=kind,
    )
    path = tmp_path / f"manifest.{kind}"
    if kind == "jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    elif kind == "csv":
        rows = [
            {**r, "text": r["text"] or None, "speaker": r["speaker"] or None}
            for r in csv.DictReader(path.open())
        ]
    else:
        rows = pq.read_table(path).to_pylist()
    assert rows == [{"path": it.path, "text": it.text, "speaker": it.speaker} for it in items]
    assert sum(it.expected == "missing_audio" for it in items) == 1


def test_no_manifest_means_no_missing_item(tmp_path):
    items = build_files_corpus(
        str(tmp_path), n_items=2, seed=0, formats=("wav",), broken=True, manifest=None
    )
    assert not list(tmp_path.glob("manifest.*"))
    assert all(it.expected != "missing_audio" for it in items)


def test_same_seed_same_corpus(tmp_path):
    kwargs = {"n_items": 3, "seed": 5, "formats": ("wav", "flac"), "rates": (8000, 16000)}
    a = build_files_corpus(str(tmp_path / "a"), **kwargs)
    b = build_files_corpus(str(tmp_path / "b"), **kwargs)
    assert a == b
    for item in a:
        assert (tmp_path / "a" / item.path).read_bytes() == (
            tmp_path / "b" / item.path
        ).read_bytes()


def test_webdataset_shards(tmp_path):
    items = build_webdataset_corpus(
        str(tmp_path), n_shards=2, items_per_shard=3, seed=3, broken=True
    )
    shards = sorted(p.name for p in tmp_path.iterdir())
    assert shards == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    by_shard: dict[str, dict[str, bytes]] = {}
    for name in shards[:2]:
        with tarfile.open(tmp_path / name) as tar:
            by_shard[name] = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    with pytest.raises(tarfile.ReadError), tarfile.open(tmp_path / shards[2]):
        pass
    for item in items:
        if item.expected == "shard_corrupt":
            assert item.shard == shards[2]
            continue
        members = by_shard[item.shard]
        assert outcome(members[item.path], item) == item.expected
        if item.text is None:
            continue
        if f"{item.key}.json" in members:
            assert json.loads(members[f"{item.key}.json"]) == {
                "text": item.text,
                "speaker": item.speaker,
            }
        else:
            assert members[f"{item.key}.txt"].decode() == item.text
    assert sum(f"{it.key}.json" in by_shard[it.shard] for it in items if it.text) == 2  # keys 2, 5


def test_parquet_shards_use_the_hugging_face_layout(tmp_path):
    items = build_parquet_corpus(str(tmp_path), n_shards=2, items_per_shard=2, seed=4, broken=True)
    table = pq.read_table(tmp_path / "shard-000000.parquet")
    assert str(table.schema.field("audio").type) == "struct<bytes: binary, path: string>"
    assert json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]["audio"] == {
        "_type": "Audio"
    }
    rows = table.to_pylist() + pq.read_table(tmp_path / "shard-000001.parquet").to_pylist()
    assert len(rows) == len(items)
    for row, item in zip(rows, items, strict=True):
        assert row["text"] == item.text
        if item.expected == "missing_audio":
            assert row["audio"] is None
            continue
        assert row["audio"]["path"] == item.path
        assert outcome(row["audio"]["bytes"], item) == item.expected


def test_writers_take_any_fsspec_filesystem():
    fs = fsspec.filesystem("memory")
    items = build_webdataset_corpus("/corpus-mem", n_shards=1, items_per_shard=2, seed=0, fs=fs)
    with tarfile.open(fileobj=io.BytesIO(fs.cat_file("/corpus-mem/shard-000000.tar"))) as tar:
        assert sorted(tar.getnames()) == sorted(
            [it.path for it in items] + ["000000.txt", "000001.txt"]
        )
    files = build_files_corpus(
        "/files-mem", n_items=2, seed=0, formats=("flac",), manifest="jsonl", fs=fs
    )
    assert fs.exists(f"/files-mem/{files[0].path}") and fs.exists("/files-mem/manifest.jsonl")


@pytest.mark.integration
def test_corpus_goes_straight_to_s3(s3_bucket):
    import s3fs

    endpoint, bucket = s3_bucket
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    items = build_parquet_corpus(f"{bucket}/hf", n_shards=1, items_per_shard=2, seed=0, fs=fs)
    rows = pq.read_table(io.BytesIO(fs.cat_file(f"{bucket}/hf/shard-000000.parquet"))).to_pylist()
    assert [r["text"] for r in rows] == [it.text for it in items]
    assert all(outcome(r["audio"]["bytes"], it) == OK for r, it in zip(rows, items, strict=True))
