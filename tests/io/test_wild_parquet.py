"""Parquet and save_to_disk folders written by `datasets` (issue 11)."""

from __future__ import annotations

import pytest

from pipeline.errors import InputError
from pipeline.io.listing import plan_input
from pipeline.spec import InputSpec
from tests.io import corpora
from tests.io.wild import meta, rows

# Parquet (Hugging Face datasets) --------------------------------------------------------------


def test_parquet_struct_with_only_a_path_reads_the_file(tmp_path):
    clips = corpora.write_clips(tmp_path / "clips", 3)
    corpora.hf_parquet_paths(
        clips, tmp_path / "data" / "train.parquet", sentence=["a", "b", "c"], speaker_id=list("xyz")
    )
    got = rows(uri=str(tmp_path), format="parquet", text_column="sentence")
    assert [r["error_code"] for r in got] == [None] * 3
    assert [r["audio_bytes"] for r in got] == [p.read_bytes() for p in clips]
    assert [r["reference"] for r in got] == ["a", "b", "c"]
    assert meta(got[1]) == {"path": str(clips[1]), "speaker_id": "y"}


def test_parquet_paths_outside_the_input_are_refused_unless_allowed(tmp_path):
    clips = corpora.write_clips(tmp_path / "clips", 2)
    corpora.hf_parquet_paths(clips, tmp_path / "data" / "train.parquet")
    got = rows(uri=str(tmp_path / "data"), format="parquet")
    assert [r["error_code"] for r in got] == ["invalid_input"] * 2
    assert "allow_outside_paths" in got[0]["error_message"]
    assert meta(got[0])["path"] == str(clips[0])
    allowed = rows(uri=str(tmp_path / "data"), format="parquet", allow_outside_paths=True)
    assert [r["error_code"] for r in allowed] == [None, None]


def test_parquet_relative_paths_resolve_against_the_shard(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpora.write_clips(tmp_path / "data" / "clips", 2)
    table = pa.table(
        {"audio": [{"bytes": None, "path": f"clips/clip00{i}.flac"} for i in (0, 1, 7)]}
    )
    pq.write_table(table, tmp_path / "data" / "train.parquet")
    got = rows(uri=str(tmp_path / "data"), format="parquet")
    assert [r["error_code"] for r in got] == [None, None, "missing_audio"]
    assert "clips/clip007.flac" in got[2]["error_message"]


def test_embedded_parquet_keeps_every_extra_column(tmp_path):
    clips = corpora.write_clips(tmp_path / "clips", 2)
    corpora.hf_parquet_embedded(
        clips, tmp_path / "data" / "train.parquet", text=["t0", "t1"], client_id=["c0", "c1"]
    )
    got = rows(uri=str(tmp_path / "data"))
    assert [r["reference"] for r in got] == ["t0", "t1"]
    assert meta(got[0]) == {"path": "clip000.flac", "client_id": "c0"}


def test_a_misnamed_audio_column_is_refused_before_any_work(tmp_path):
    clips = corpora.write_clips(tmp_path / "clips", 2)
    corpora.hf_parquet_embedded(clips, tmp_path / "data" / "train.parquet")
    with pytest.raises(InputError, match="input.audio_column"):
        plan_input(InputSpec(uri=str(tmp_path / "data"), audio_column="speech"))


def test_save_to_disk_folders_are_read_directly(tmp_path):
    clips = corpora.write_clips(tmp_path / "clips", 3)
    corpora.hf_save_to_disk(clips, tmp_path / "saved", text=["x", "y", "z"], spk=list("abc"))
    got = rows(uri=str(tmp_path / "saved"))
    assert [r["reference"] for r in got] == ["x", "y", "z"]
    assert [r["audio_bytes"] for r in got] == [p.read_bytes() for p in clips]
    assert meta(got[2])["spk"] == "c"


def test_a_later_shard_without_the_audio_column_is_one_config_error_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    clips = corpora.write_clips(tmp_path / "clips", 2)
    corpora.hf_parquet_embedded(clips, tmp_path / "data" / "a.parquet")
    pq.write_table(pa.table({"speech": [b"x"], "text": ["t"]}), tmp_path / "data" / "b.parquet")
    got = rows(uri=str(tmp_path / "data"))
    assert [r["error_code"] for r in got] == [None, None, "config_error"]
    assert got[2]["member"] == "" and "input.audio_column: speech" in got[2]["error_message"]


def test_id_column_keeps_the_users_ids(tmp_path):
    clips = corpora.write_clips(tmp_path / "clips", 3)
    corpora.hf_parquet_embedded(clips, tmp_path / "d" / "t.parquet", utt=["x1", "x2", "x1"])
    got = rows(uri=str(tmp_path / "d"), id_column="utt")
    assert [r["item_id"] for r in got[:2]] == ["x1", "x2"]
    assert got[2]["error_code"] == "duplicate_id" and got[2]["item_id"] != "x1"


def test_an_explicit_text_column_the_shards_lack_is_refused_before_any_work(tmp_path):
    clips = corpora.write_clips(tmp_path / "clips", 1)
    corpora.hf_parquet_embedded(clips, tmp_path / "d" / "t.parquet", sentence=["s"])
    with pytest.raises(InputError, match="input.text_column"):
        plan_input(InputSpec(uri=str(tmp_path / "d"), text_column="transcript"))


def test_an_id_repeated_in_another_shard_is_a_duplicate_id_row_naming_both(tmp_path):
    clips = corpora.write_clips(tmp_path / "clips", 4)
    corpora.hf_parquet_embedded(clips[:2], tmp_path / "d" / "a.parquet", utt=["x1", "x2"])
    corpora.hf_parquet_embedded(clips[2:], tmp_path / "d" / "b.parquet", utt=["x3", "x1"])
    got = rows(uri=str(tmp_path / "d"), id_column="utt")
    assert [r["error_code"] for r in got] == [None, None, None, "duplicate_id"]
    assert [r["item_id"] for r in got[:3]] == ["x1", "x2", "x3"]
    assert len({r["item_id"] for r in got}) == 4
    message = got[3]["error_message"]
    assert "b.parquet row=1" in message and "a.parquet row=0" in message
    assert got[3]["audio_bytes"] is None and meta(got[3])["utt"] == "x1"
    # A re-plan gives the same ids: the duplicate is not a new item each time.
    assert [r["item_id"] for r in rows(uri=str(tmp_path / "d"), id_column="utt")] == [
        r["item_id"] for r in got
    ]


def test_a_repeated_id_in_a_save_to_disk_folder_names_its_first_row(tmp_path):
    clips = corpora.write_clips(tmp_path / "clips", 3)
    corpora.hf_save_to_disk(clips, tmp_path / "saved", spk=["a", "b", "a"])
    got = rows(uri=str(tmp_path / "saved"), id_column="spk")
    assert [r["item_id"] for r in got[:2]] == ["a", "b"]
    assert got[2]["error_code"] == "duplicate_id"
    assert "row=2: id 'a'" in got[2]["error_message"]
    assert "is also the id of" in got[2]["error_message"] and "row=0" in got[2]["error_message"]


def test_an_id_an_earlier_run_took_for_a_listed_shard_stays_that_shards(tmp_path):
    from dataclasses import replace

    import numpy as np
    import pyarrow as pa

    from pipeline.io.completion import Records
    from pipeline.io.listing import cut_input, list_input
    from pipeline.io.own_ids import recorded_ids
    from pipeline.io.reading import read_unit

    clips = corpora.write_clips(tmp_path / "clips", 4)
    corpora.hf_parquet_embedded(clips[:2], tmp_path / "d" / "a.parquet", utt=["x1", "x2"])
    corpora.hf_parquet_embedded(clips[2:], tmp_path / "d" / "b.parquet", utt=["x3", "x1"])
    spec = InputSpec(uri=str(tmp_path / "d"), id_column="utt")
    listing = list_input(spec)
    uri_a, uri_b = (u.shard_uri for u in plan_input(spec).units)
    # Records of an earlier run that took x1 for b.parquet, and x2 for a shard no longer
    # listed (moved away: its id is free again).
    gone = uri_a.replace("a.parquet", "old.parquet")
    table = pa.table({"item_id": ["x1", "x2"], "source_uri": [uri_b, gone]})
    recorded = recorded_ids(Records(table, np.array([], dtype="S1")), listing)
    plan = cut_input(replace(listing, recorded_ids=recorded), spec)
    got = [r for u in plan.units for t in read_unit(u, spec, 2**26) for r in t.to_pylist()]
    assert [r["error_code"] for r in got] == ["duplicate_id", None, None, None]
    assert got[0]["source_uri"] == uri_a
    assert f"{uri_b} (processed by an earlier run)" in got[0]["error_message"]
    assert [r["item_id"] for r in got[1:]] == ["x2", "x3", "x1"]
