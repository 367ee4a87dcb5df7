"""WebDataset shards written by `webdataset`: dotted keys, .tar.gz, JSON fields (issue 11)."""

from __future__ import annotations

from tests.io import corpora
from tests.io.wild import by_member, meta, rows

# WebDataset ---------------------------------------------------------------------------------


def test_webdataset_sample_with_several_audio_members_is_one_error_row(tmp_path):
    corpora.webdataset_dotted(tmp_path)
    got = by_member(rows(uri=str(tmp_path)))
    assert sorted(got) == ["plain", "spk0", "utt030"]
    assert got["spk0"]["error_code"] == "ambiguous_sample"
    assert "utt000.flac" in got["spk0"]["error_message"]
    assert "input.webdataset.key: full" in got["spk0"]["error_message"]
    assert got["utt030"]["error_code"] is None and got["utt030"]["reference"] == "version two"


def test_webdataset_key_full_makes_each_member_its_own_item(tmp_path):
    corpora.webdataset_dotted(tmp_path)
    got = by_member(rows(uri=str(tmp_path), webdataset={"key": "full"}))
    assert sorted(got) == ["plain", "spk0.utt000", "spk0.utt001", "spk0.utt002", "utt030.v2"]
    assert all(r["error_code"] is None for r in got.values())
    assert got["spk0.utt001"]["reference"] == "spk zero 1"
    assert got["utt030.v2"]["reference"] == "version two"


def test_webdataset_json_fields_are_metadata_and_text_column_picks_the_reference(tmp_path):
    corpora.webdataset_dotted(tmp_path)
    plain = by_member(rows(uri=str(tmp_path)))["plain"]
    assert plain["reference"] is None
    assert meta(plain) == {"transcription": "from json", "speaker": "s9", "client_id": "c1"}
    plain = by_member(rows(uri=str(tmp_path), text_column="transcription"))["plain"]
    assert plain["reference"] == "from json"
    assert meta(plain) == {"speaker": "s9", "client_id": "c1"}


def test_gzipped_webdataset_shards_are_read(tmp_path):
    corpora.webdataset_gz(tmp_path, n=5, per_shard=2)
    got = by_member(rows(uri=str(tmp_path)))
    assert sorted(got) == [f"k{i:03d}" for i in range(5)]
    assert got["k003"]["reference"] == "text 3" and got["k003"]["audio_bytes"]


def test_a_key_that_comes_again_later_in_the_shard_is_its_own_error_row(tmp_path):
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "s.tar")) as w:
        for key in ("a", "b", "a"):
            w.write({"__key__": key, "flac": corpora.flac_bytes(), "txt": key})
    got = rows(uri=str(tmp_path))
    assert [r["error_code"] for r in got] == [None, None, "duplicate_id"]
    assert len({r["item_id"] for r in got}) == 3 and got[2]["member"].startswith("a#")
