"""Test corpora written the way users' corpora are: by the real tools.

WebDataset shards by `webdataset.TarWriter`/`ShardWriter`, Hugging Face Parquet and
`save_to_disk` folders by `datasets`, lhotse manifests by lhotse. Common Voice and
LibriSpeech have no writer library; their layouts (an unquoted `train.tsv` beside
`clips/`, `SPK/CHAPTER/SPK-CHAPTER.trans.txt` beside the FLACs) are written as the
projects publish them. NeMo manifests are JSON lines, as NeMo's scripts write them.
Every clip is a distinct tone, so a test can tell which audio an item decoded.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000


def tone(seconds: float = 0.4, freq: float = 440.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def flac_bytes(seconds: float = 0.4, freq: float = 440.0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, freq), RATE, format="FLAC")
    return buf.getvalue()


def write_clips(folder: Path, n: int, ext: str = "flac", seconds: float = 0.4) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"clip{i:03d}.{ext}"
        sf.write(p, tone(seconds, 300.0 + 20 * i), RATE, format=ext.upper())
        paths.append(p)
    return paths


def webdataset_dotted(folder: Path) -> Path:
    """A shard whose keys contain dots, as people name utterances (`spk0.utt000`, `utt030.v2`).

    WebDataset itself groups members by the basename up to the first dot: sample
    `spk0` then holds `utt000.flac`, `utt001.flac`, ... and `utt030` holds `v2.flac`."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dotted-000.tar"
    with wds.TarWriter(str(path)) as w:
        for i in range(3):
            w.write({"__key__": f"spk0.utt{i:03d}", "flac": flac_bytes(), "txt": f"spk zero {i}"})
        w.write({"__key__": "utt030.v2", "flac": flac_bytes(), "txt": "version two"})
        w.write(
            {
                "__key__": "plain",
                "flac": flac_bytes(),
                "json": {"transcription": "from json", "speaker": "s9", "client_id": "c1"},
            }
        )
    return path


def webdataset_gz(folder: Path, n: int = 5, per_shard: int = 2) -> list[Path]:
    """`ShardWriter` gzips shards whose name ends in gz."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(folder / "train-%03d.tar.gz"), maxcount=per_shard, verbose=0) as w:
        for i in range(n):
            w.write({"__key__": f"k{i:03d}", "flac": flac_bytes(), "txt": f"text {i}"})
    return sorted(folder.glob("*.tar.gz"))


def hf_dataset(clips: list[Path], **columns):
    """A `datasets.Dataset` built from file paths (FACTS: encoding goes through torchcodec,
    whose wheel fails here; a dataset cast from paths does not)."""
    from datasets import Audio, Dataset

    return Dataset.from_dict({"audio": [str(p) for p in clips], **columns}).cast_column(
        "audio", Audio()
    )


def hf_parquet_paths(clips: list[Path], out: Path, **columns) -> Path:
    """`to_parquet` of a dataset built from paths: the audio struct is `{bytes: null, path}`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    hf_dataset(clips, **columns).to_parquet(str(out))
    return out


def hf_parquet_embedded(clips: list[Path], out: Path, **columns) -> Path:
    """The bytes embedded, as `push_to_hub` writes shards."""
    import pyarrow.parquet as pq
    from datasets.table import embed_table_storage

    out.parent.mkdir(parents=True, exist_ok=True)
    table = embed_table_storage(hf_dataset(clips, **columns).data.table)
    pq.write_table(table, out)
    return out


def hf_save_to_disk(clips: list[Path], out: Path, embed: bool = True, **columns) -> Path:
    """`Dataset.save_to_disk`: Arrow IPC stream files + dataset_info.json + state.json."""
    from datasets import Dataset
    from datasets.table import embed_table_storage

    ds = hf_dataset(clips, **columns)
    if embed:
        ds = Dataset(embed_table_storage(ds.data.table), info=ds.info)
    ds.save_to_disk(str(out))
    return out


def common_voice(folder: Path, sentences: list[str]) -> Path:
    """`clips/*.mp3` and an unquoted, tab-separated `train.tsv` (Common Voice's layout)."""
    clips = folder / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, sentence in enumerate(sentences):
        name = f"common_voice_en_{1000 + i}.mp3"
        sf.write(clips / name, tone(0.5, 300.0 + 20 * i), RATE, format="MP3")
        rows.append([f"client{i % 3}", name, sentence, "2", "0", "", "", "", "en", ""])
    with open(folder / "train.tsv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, quotechar=None)
        w.writerow(
            [
                "client_id",
                "path",
                "sentence",
                "up_votes",
                "down_votes",
                "age",
                "gender",
                "accents",
                "locale",
                "segment",
            ]
        )
        w.writerows(rows)
    return folder / "train.tsv"


def librispeech(folder: Path, speakers: int = 2, chapters: int = 1, utts: int = 3) -> dict:
    """`SPK/CHAPTER/SPK-CHAPTER-NNNN.flac` with `SPK-CHAPTER.trans.txt` beside them."""
    refs = {}
    for s in range(speakers):
        spk = str(19 + s)
        for c in range(chapters):
            chap = str(198 + c)
            d = folder / spk / chap
            d.mkdir(parents=True, exist_ok=True)
            lines = []
            for u in range(utts):
                utt = f"{spk}-{chap}-{u:04d}"
                sf.write(d / f"{utt}.flac", tone(0.4, 300.0 + 10 * u), RATE, format="FLAC")
                refs[utt] = f"WORDS OF {spk} {chap} NUMBER {u}"
                lines.append(f"{utt} {refs[utt]}")
            (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return refs


def nemo_manifest(path: Path, lines: list[dict]) -> Path:
    """NeMo's manifest: one JSON object per line (audio_filepath, duration, offset, text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def lhotse_manifests(folder: Path, audio: Path, spans: list[tuple[float, float, str]]):
    """lhotse's default files: recordings.jsonl.gz and supervisions.jsonl.gz (one recording,
    a supervision per span)."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    folder.mkdir(parents=True, exist_ok=True)
    rec = Recording.from_file(str(audio), recording_id="rec0")
    RecordingSet.from_recordings([rec]).to_file(str(folder / "recordings.jsonl.gz"))
    sups = [
        SupervisionSegment(
            id=f"rec0-{i}",
            recording_id="rec0",
            start=start,
            duration=duration,
            text=text,
            speaker="spk0",
        )
        for i, (start, duration, text) in enumerate(spans)
    ]
    SupervisionSet.from_segments(sups).to_file(str(folder / "supervisions.jsonl.gz"))
    return folder / "recordings.jsonl.gz", folder / "supervisions.jsonl.gz"


def steps_wav(path: Path, seconds: int = 3) -> Path:
    """A file whose second i holds the constant 0.1 * (i + 1): a decoded span says where it
    came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.concatenate([np.full(RATE, 0.1 * (i + 1), np.float32) for i in range(seconds)])
    sf.write(path, x, RATE, format="WAV", subtype="FLOAT")
    return path
