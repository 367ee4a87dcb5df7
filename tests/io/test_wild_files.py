"""Manifests as the tools write them (Common Voice, NeMo, lhotse, LibriSpeech), through the files format (issue 11)."""

from __future__ import annotations

import json

from tests.io import corpora
from tests.io.wild import meta, rows

# Manifests of the files format ----------------------------------------------------------------


SENTENCES = [
    '"Hello," said the cat.',
    '"An unbalanced quote opens this one',
    "and the next row must stay a row",
    "so must this one",
    *[f"plain sentence {i}" for i in range(6)],
]


def test_common_voice_layout_gives_every_row_with_its_sentence(tmp_path):
    tsv = corpora.common_voice(tmp_path, SENTENCES)
    got = rows(uri=str(tmp_path / "clips"), manifest=str(tsv))
    assert [r["reference"] for r in got] == SENTENCES
    assert meta(got[0])["client_id"] == "client0"


def test_a_manifest_line_that_cannot_be_parsed_is_an_error_row(tmp_path):
    corpora.write_clips(tmp_path, 2)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "clip000.flac"}\n{"path": oops}\n{"path": "clip001.flac"}\n')
    got = rows(uri=str(tmp_path), manifest=str(manifest))
    assert sorted(r["error_code"] or "ok" for r in got) == ["invalid_input", "ok", "ok"]
    (bad,) = [r for r in got if r["error_code"]]
    assert "line 2" in bad["error_message"] and bad["member"] == "line=2"
    assert bad["source_uri"] == str(manifest)


def test_nemo_offsets_are_items_covering_their_span(tmp_path):
    audio = corpora.steps_wav(tmp_path / "long.wav")
    manifest = corpora.nemo_manifest(
        tmp_path / "manifest.json",
        [
            {"audio_filepath": "long.wav", "duration": 1.0, "offset": 0.0, "text": "one"},
            {"audio_filepath": "long.wav", "duration": 1.0, "offset": 1.0, "text": "two"},
            {"audio_filepath": str(audio), "duration": 3.0, "text": "all"},
        ],
    )
    got = rows(uri=str(tmp_path), manifest=str(manifest))
    assert [(r["start_s"], r["end_s"], r["reference"]) for r in got] == [
        (0.0, 1.0, "one"),
        (1.0, 2.0, "two"),
        (None, None, "all"),
    ]
    assert len({r["item_id"] for r in got}) == 3
    assert {r["source_uri"] for r in got} == {got[0]["source_uri"]}


def test_segment_ids_are_stable_from_file_start_and_end(tmp_path):
    audio = corpora.steps_wav(tmp_path / "long.wav")
    _, sups = corpora.lhotse_manifests(tmp_path, audio, [(0.0, 1.0, "one"), (1.5, 1.2, "two")])
    first = rows(uri=str(tmp_path), manifest=str(sups))
    again = rows(uri=str(tmp_path), manifest=str(sups))
    assert [r["item_id"] for r in first] == [r["item_id"] for r in again]
    assert [r["reference"] for r in first] == ["one", "two"]
    assert meta(first[1])["id"] == "rec0-1"


def test_librispeech_trans_txt_are_the_references(tmp_path):
    refs = corpora.librispeech(tmp_path)
    got = rows(uri=str(tmp_path), references="librispeech")
    assert len(got) == len(refs)
    assert {r["source_uri"].rsplit("/", 1)[-1][:-5]: r["reference"] for r in got} == refs


def test_id_column_keeps_the_users_ids_and_a_repeated_one_is_an_error_row(tmp_path):
    corpora.write_clips(tmp_path, 3)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"path": f"clip00{i}.flac", "utt": u}) + "\n"
            for i, u in enumerate(["u-a", "u-b", "u-a"])
        )
    )
    got = rows(uri=str(tmp_path), manifest=str(manifest), id_column="utt")
    assert [r["item_id"] for r in got[:2]] == ["u-a", "u-b"]
    assert got[2]["error_code"] == "duplicate_id" and got[2]["item_id"] not in ("u-a", "u-b")
    assert meta(got[0])["utt"] == "u-a"
    derived = rows(uri=str(tmp_path), manifest=str(manifest))
    assert all(len(r["item_id"]) == 24 for r in derived)


def test_id_column_names_lhotse_supervision_ids(tmp_path):
    audio = corpora.steps_wav(tmp_path / "long.wav")
    _, sups = corpora.lhotse_manifests(tmp_path, audio, [(0.0, 1.0, "one"), (1.5, 1.2, "two")])
    got = rows(uri=str(tmp_path), manifest=str(sups), id_column="id")
    assert [r["item_id"] for r in got] == ["rec0-0", "rec0-1"]


def test_common_voice_paths_resolve_from_the_dataset_root_too(tmp_path):
    tsv = corpora.common_voice(tmp_path, SENTENCES[:3])
    got = rows(uri=str(tmp_path), manifest=str(tsv))
    assert [r["error_code"] for r in got] == [None, None, None]
    assert all("/clips/" in r["source_uri"] for r in got)


def test_nemo_relative_paths_resolve_against_the_manifest_folder(tmp_path):
    corpora.steps_wav(tmp_path / "sub" / "long.wav")
    manifest = corpora.nemo_manifest(
        tmp_path / "sub" / "manifest.json", [{"audio_filepath": "long.wav", "duration": 3.0}]
    )
    (got,) = rows(uri=str(tmp_path), manifest=str(manifest))
    assert got["error_code"] is None and got["source_uri"].endswith("sub/long.wav")
