"""Multi-channel lhotse recordings (issue 11): a supervision decodes its channel(s) only.

The corpora are written by lhotse itself (`Recording.from_file`, `AudioSource`,
`SupervisionSegment(channel=...)`), and the decoded samples are compared with what
lhotse's own `Recording.load_audio` gives for that channel and span.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from pipeline.columns import AUDIO, ITEM_SCHEMA
from pipeline.io.units import item_id, span_member
from pipeline.spec import DecodeSpec
from pipeline.stages.decode import DecodeStage
from tests.io.corpora import RATE, tone
from tests.io.wild import meta, rows


def _stereo(path: Path, seconds: float = 2.0) -> Path:
    """Channel 0 a 440 Hz tone, channel 1 a 1,000 Hz tone at another level."""
    left, right = tone(seconds, 440.0), 0.5 * tone(seconds, 1000.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([left, right], axis=1), RATE, format="WAV", subtype="FLOAT")
    return path


def _mono(path: Path, freq: float, seconds: float = 2.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, freq), RATE, format="WAV", subtype="FLOAT")
    return path


def _manifests(folder: Path, recording, sups: list[tuple[str, float, float, object]]) -> Path:
    """recordings.jsonl.gz with `recording` and supervisions.jsonl.gz with (id, start,
    duration, channel) each, as lhotse writes them."""
    from lhotse import RecordingSet, SupervisionSegment, SupervisionSet

    RecordingSet.from_recordings([recording]).to_file(str(folder / "recordings.jsonl.gz"))
    segments = [
        SupervisionSegment(
            id=sid, recording_id=recording.id, start=start, duration=dur, channel=ch, text=sid
        )
        for sid, start, dur, ch in sups
    ]
    SupervisionSet.from_segments(segments).to_file(str(folder / "supervisions.jsonl.gz"))
    return folder / "supervisions.jsonl.gz"


def _decoded(items: list[dict]) -> list[np.ndarray | None]:
    table = pa.Table.from_pylist(items, schema=ITEM_SCHEMA)
    out = DecodeStage(DecodeSpec(), RATE)(table)
    return [None if a is None else np.asarray(a, np.float32) for a in out.column(AUDIO).to_pylist()]


def _lhotse(recording, channels, start: float, duration: float) -> np.ndarray:
    """What lhotse itself loads for these channels and span (averaged over channels)."""
    x = recording.load_audio(channels=channels, offset=start, duration=duration)
    return np.asarray(x, np.float32).mean(axis=0)


def test_a_supervision_decodes_only_its_channel_and_a_list_averages_them(tmp_path):
    from lhotse import Recording

    rec = Recording.from_file(str(_stereo(tmp_path / "audio" / "call.wav")), recording_id="call")
    sups = _manifests(
        tmp_path,
        rec,
        [("left", 0.5, 1.0, 0), ("right", 0.5, 1.0, 1), ("both", 0.5, 1.0, [0, 1])],
    )
    got = rows(uri=str(tmp_path), manifest=str(sups))
    assert [r["error_code"] for r in got] == [None, None, None]
    audio = _decoded(got)
    for x, ch in zip(audio, (0, 1, [0, 1]), strict=True):
        np.testing.assert_allclose(x, _lhotse(rec, ch, 0.5, 1.0), atol=1e-6)
    # The channels differ, so a downmix would have matched none of them but "both".
    assert not np.allclose(audio[0], audio[1], atol=1e-3)
    # Same span, different channels: distinct items, ids stable on a re-plan.
    ids = [r["item_id"] for r in got]
    assert len(set(ids)) == 3
    assert ids == [r["item_id"] for r in rows(uri=str(tmp_path), manifest=str(sups))]
    assert [r["member"] for r in got] == ["0.5-1.5:ch=0", "0.5-1.5:ch=1", "0.5-1.5:ch=0+1"]
    assert meta(got[2])["channel"] == [0, 1]


def test_one_source_per_channel_reads_the_file_holding_the_channel(tmp_path):
    from lhotse import AudioSource, Recording

    a = _mono(tmp_path / "audio" / "a.wav", 440.0)
    b = _mono(tmp_path / "audio" / "b.wav", 1000.0)
    rec = Recording(
        id="meeting",
        sources=[
            AudioSource(type="file", channels=[0], source=str(a)),
            AudioSource(type="file", channels=[1], source=str(b)),
        ],
        sampling_rate=RATE,
        num_samples=2 * RATE,
        duration=2.0,
    )
    sups = _manifests(
        tmp_path, rec, [("s0", 0.0, 1.0, 0), ("s1", 0.25, 1.0, 1), ("s01", 0.0, 1.0, [0, 1])]
    )
    got = rows(uri=str(tmp_path), manifest=str(sups))
    assert [r["source_uri"].rsplit("/", 1)[-1] for r in got[:2]] == ["a.wav", "b.wav"]
    audio = _decoded(got[:2])
    np.testing.assert_allclose(audio[0], _lhotse(rec, 0, 0.0, 1.0), atol=1e-6)
    np.testing.assert_allclose(audio[1], _lhotse(rec, 1, 0.25, 1.0), atol=1e-6)
    # Channels held by two files are not one item's audio: an error row, not half of it.
    assert got[2]["error_code"] == "invalid_input"
    assert "s01" in got[2]["error_message"] and "[0, 1]" in got[2]["error_message"]


def test_a_channel_the_recording_lacks_is_an_error_row_naming_supervision_and_channel(tmp_path):
    from lhotse import Recording

    rec = Recording.from_file(str(_stereo(tmp_path / "audio" / "call.wav")), recording_id="call")
    sups = _manifests(tmp_path, rec, [("ok", 0.0, 1.0, 1), ("third", 0.0, 1.0, 2)])
    got = rows(uri=str(tmp_path), manifest=str(sups))
    assert [r["error_code"] for r in got] == [None, "invalid_input"]
    message = got[1]["error_message"]
    assert "'third'" in message and "channel 2" in message and "[0, 1]" in message
    assert got[1]["audio_bytes"] is None


def test_a_channel_the_file_lacks_is_a_decode_error_never_a_downmix(tmp_path):
    from lhotse import AudioSource, Recording

    # The manifest says the file holds channels 0 and 1; it is mono.
    mono = _mono(tmp_path / "audio" / "m.wav", 440.0)
    rec = Recording(
        id="lies",
        sources=[AudioSource(type="file", channels=[0, 1], source=str(mono))],
        sampling_rate=RATE,
        num_samples=2 * RATE,
        duration=2.0,
    )
    sups = _manifests(tmp_path, rec, [("zero", 0.0, 1.0, 0), ("one", 0.0, 1.0, 1)])
    got = rows(uri=str(tmp_path), manifest=str(sups))
    assert [r["error_code"] for r in got] == [None, None]
    table = DecodeStage(DecodeSpec(), RATE)(pa.Table.from_pylist(got, schema=ITEM_SCHEMA))
    assert table.column("error_code").to_pylist() == [None, "invalid_input"]
    message = table.column("error_message").to_pylist()[1]
    assert "ch=1" in message and "1 channel" in message


@pytest.mark.parametrize("channel", [0, None])
def test_mono_recordings_keep_their_ids(tmp_path, channel):
    from lhotse import Recording

    audio = _mono(tmp_path / "audio" / "m.wav", 440.0)
    rec = Recording.from_file(str(audio), recording_id="m")
    sups = _manifests(tmp_path, rec, [("s", 0.5, 1.0, 0)])
    if channel is None:  # a hand-written manifest without `channel`
        import gzip
        import json

        line = json.loads(gzip.decompress(sups.read_bytes()))
        del line["channel"]
        sups.write_bytes(gzip.compress(json.dumps(line).encode() + b"\n"))
    (got,) = rows(uri=str(tmp_path), manifest=str(sups))
    assert got["member"] == span_member(0.5, 1.5) == "0.5-1.5"
    assert got["source_uri"].endswith(str(audio))
    assert got["item_id"] == item_id(got["source_uri"], "0.5-1.5")
    np.testing.assert_allclose(_decoded([got])[0], _lhotse(rec, 0, 0.5, 1.0), atol=1e-6)
