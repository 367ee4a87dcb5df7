"""Manifests as users have them: Common Voice TSV, gzipped JSONL/CSV, NeMo, bad lines."""

from __future__ import annotations

import gzip
import json

import pytest

from pipeline.io.manifest import read_manifest
from pipeline.spec import StorageOptions
from tests.io.corpora import common_voice, lhotse_manifests, nemo_manifest, steps_wav

STORAGE = StorageOptions()
SENTENCES = [
    '"Hello," said the cat.',
    '"An unbalanced quote opens this one',
    "and the next row must stay a row",
    "so must this one",
    *[f"plain sentence {i}" for i in range(6)],
]


def test_common_voice_tsv_is_read_without_quote_processing(tmp_path):
    tsv = common_voice(tmp_path, SENTENCES)
    entries = read_manifest(str(tsv), STORAGE)
    assert [e.text for e in entries] == SENTENCES
    assert all(e.error is None for e in entries)
    meta = json.loads(entries[0].metadata)
    assert meta["client_id"] == "client0" and meta["locale"] == "en"


def test_quoting_can_be_turned_on_for_a_tsv(tmp_path):
    tsv = tmp_path / "m.tsv"
    tsv.write_text('path\ttext\na.wav\t"quoted\ttab"\n')
    assert read_manifest(str(tsv), STORAGE, quoting="csv")[0].text == "quoted\ttab"


@pytest.mark.parametrize("suffix", ["jsonl.gz", "csv.gz"])
def test_gzipped_manifests(tmp_path, suffix):
    path = tmp_path / f"m.{suffix}"
    if suffix.startswith("jsonl"):
        body = "".join(json.dumps({"path": f"a{i}.wav", "text": f"t{i}"}) + "\n" for i in range(3))
    else:
        body = "path,text\n" + "".join(f"a{i}.wav,t{i}\n" for i in range(3))
    path.write_bytes(gzip.compress(body.encode()))
    assert [(e.path, e.text) for e in read_manifest(str(path), STORAGE)] == [
        (f"a{i}.wav", f"t{i}") for i in range(3)
    ]


def test_a_line_that_cannot_be_parsed_is_an_entry_naming_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "a.wav"}\n{"path": "b.wav", oops\n[1, 2]\n{"path": "c.wav"}\n')
    entries = read_manifest(str(path), STORAGE)
    assert [e.path for e in entries if e.error is None] == ["a.wav", "c.wav"]
    errors = sorted(e.error for e in entries if e.error)
    assert len(errors) == 2 and "line 2" in errors[0] and "line 3" in errors[1]


def test_a_tsv_row_with_the_wrong_number_of_fields_is_an_error_entry(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("path\tsentence\na.wav\tfine\nb.wav\tone\ttoo many\nc.wav\tfine too\n")
    entries = read_manifest(str(path), STORAGE)
    assert [e.path for e in entries if e.error is None] == ["a.wav", "c.wav"]
    (bad,) = [e for e in entries if e.error]
    assert "line 3" in bad.error and "3 fields" in bad.error


def test_nemo_lines_with_an_offset_are_segments(tmp_path):
    path = nemo_manifest(
        tmp_path / "nemo.json",
        [
            {"audio_filepath": "long.wav", "duration": 1.0, "offset": 0.5, "text": "one"},
            {"audio_filepath": "long.wav", "duration": 1.2, "offset": 1.5, "text": "two"},
            {"audio_filepath": "short.wav", "duration": 0.4, "text": "whole"},
            {"audio_filepath": "bad.wav", "duration": -1.0, "offset": 0.0, "text": "x"},
        ],
    )
    entries = read_manifest(str(path), STORAGE)
    assert [(e.path, e.start, e.end, e.text) for e in entries[:3]] == [
        ("long.wav", 0.5, 1.5, "one"),
        ("long.wav", 1.5, pytest.approx(2.7), "two"),
        ("short.wav", None, None, "whole"),
    ]
    assert "line 4" in entries[3].error
    assert json.loads(entries[2].metadata) == {"duration": 0.4}


def test_lhotse_supervisions_are_segments_of_their_recordings(tmp_path):
    audio = steps_wav(tmp_path / "audio" / "long.wav")
    _, sups = lhotse_manifests(tmp_path, audio, [(0.0, 1.0, "one"), (1.5, 1.2, "two")])
    entries = read_manifest(str(sups), STORAGE)
    assert [(e.path, e.start, e.end, e.text) for e in entries] == [
        (str(audio), 0.0, 1.0, "one"),
        (str(audio), 1.5, pytest.approx(2.7), "two"),
    ]
    meta = json.loads(entries[0].metadata)
    assert meta["id"] == "rec0-0" and meta["speaker"] == "spk0" and meta["recording_id"] == "rec0"


def test_a_supervision_of_an_unknown_recording_is_an_error_entry(tmp_path):
    audio = steps_wav(tmp_path / "long.wav")
    _, sups = lhotse_manifests(tmp_path, audio, [(0.0, 1.0, "one")])
    extra = {"id": "x", "recording_id": "nope", "start": 0.0, "duration": 1.0, "channel": 0}
    with gzip.open(sups, "at") as f:
        f.write(json.dumps(extra) + "\n")
    entries = read_manifest(str(sups), STORAGE)
    assert (
        entries[0].error is None and "'nope'" in entries[1].error and "line 2" in entries[1].error
    )
