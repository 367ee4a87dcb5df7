import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError
from pipeline.io.listing import plan_input
from pipeline.io.reading import read_unit
from pipeline.io.units import item_id
from pipeline.spec import InputSpec

MAX = 2**20


def _rows(plan, spec, max_bytes=MAX):
    return pa.concat_tables(
        [t for u in plan.units for t in read_unit(u, spec, max_bytes, batch=3)]
    ).to_pylist()


def _files(tmp_path, n=5):
    for i in range(n):
        sub = tmp_path / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        (sub / f"u{i}.wav").write_bytes(b"x" * (10 + i))
    (tmp_path / "notes.md").write_text("not audio")


def test_files_without_manifest_lists_audio_only(tmp_path):
    _files(tmp_path)
    spec = InputSpec(uri=str(tmp_path))
    plan = plan_input(spec, items_per_unit=2)
    assert plan.format == "files"
    assert [u.num_items for u in plan.units] == [2, 2, 1]
    assert plan.total_items == 5
    rows = _rows(plan, spec)
    assert len(rows) == 5
    assert {r["shard"] for r in rows} == {"a", "b"}
    assert all(r["error_code"] is None and r["reference"] is None for r in rows)
    assert rows[0]["item_id"] == item_id(rows[0]["source_uri"], "")


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_manifest_gives_references_metadata_and_missing_files(tmp_path, kind):
    _files(tmp_path)
    entries = [
        {"path": "b/u0.wav", "text": "hello world", "speaker": "s1"},
        {"path": "a/u1.wav", "text": "good day", "speaker": "s2"},
        {"path": "a/missing.wav", "text": "gone", "speaker": "s3"},
    ]
    mpath = tmp_path / f"manifest.{kind}"
    if kind == "jsonl":
        mpath.write_text("\n".join(json.dumps(e) for e in entries))
    elif kind == "csv":
        mpath.write_text(
            "path,text,speaker\n"
            + "\n".join(f"{e['path']},{e['text']},{e['speaker']}" for e in entries)
        )
    else:
        pq.write_table(pa.Table.from_pylist(entries), mpath)
    spec = InputSpec(uri=str(tmp_path), manifest=str(mpath))
    rows = _rows(plan_input(spec), spec)
    assert [r["reference"] for r in rows] == ["hello world", "good day", "gone"]
    assert json.loads(rows[0]["metadata"]) == {"speaker": "s1"}
    assert rows[0]["audio_bytes"] == b"x" * 10
    assert rows[2]["error_code"] == "missing_audio" and rows[2]["audio_bytes"] is None


def test_manifest_without_path_column_is_refused(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"file": "a.wav"}))
    with pytest.raises(InputError, match="no `path` column"):
        plan_input(InputSpec(uri=str(tmp_path), manifest=str(tmp_path / "m.jsonl")))


def test_missing_input_and_empty_input_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        plan_input(InputSpec(uri=str(tmp_path / "nope")))
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no audio files"):
        plan_input(InputSpec(uri=str(tmp_path)))


def test_oversized_file_is_refused_without_reading(tmp_path):
    (tmp_path / "big.wav").write_bytes(b"x" * 2000)
    spec = InputSpec(uri=str(tmp_path))
    rows = _rows(plan_input(spec), spec, max_bytes=1000)
    assert rows[0]["error_code"] == "too_large" and rows[0]["audio_bytes"] is None


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_webdataset_groups_members_by_key(tmp_path):
    _tar(
        tmp_path / "shard-000000.tar",
        [
            ("k1.flac", b"AUDIO1"),
            ("k1.txt", b"first text\n"),
            ("k2.wav", b"AUDIO2"),
            ("k2.json", json.dumps({"text": "second", "speaker": "s"}).encode()),
            ("k3.txt", b"no audio here"),
        ],
    )
    spec = InputSpec(uri=str(tmp_path))
    plan = plan_input(spec)
    assert plan.format == "webdataset" and len(plan.units) == 1
    rows = _rows(plan, spec)
    assert [(r["member"], r["reference"], r["error_code"]) for r in rows] == [
        ("k1", "first text", None),
        ("k2", "second", None),
        ("k3", "no audio here", "missing_audio"),
    ]
    assert json.loads(rows[1]["metadata"]) == {"speaker": "s"}
    assert rows[0]["shard"] == "shard-000000.tar"


def test_truncated_tar_keeps_read_items_and_records_the_shard(tmp_path):
    good = tmp_path / "good.tar"
    _tar(good, [(f"k{i}.wav", b"A" * 3000) for i in range(4)])
    (tmp_path / "cut.tar").write_bytes(good.read_bytes()[:5000])
    good.unlink()
    spec = InputSpec(uri=str(tmp_path))
    rows = _rows(plan_input(spec), spec)
    assert rows[-1]["error_code"] == "shard_corrupt" and rows[-1]["member"] == ""
    assert all(r["error_code"] is None for r in rows[:-1])


def test_parquet_shards_with_hf_audio_struct(tmp_path):
    table = pa.table(
        {
            "audio": [
                {"bytes": b"A1", "path": "x.wav"},
                {"bytes": None, "path": "y.wav"},
                {"bytes": b"A3", "path": "z.wav"},
            ],
            "text": ["one", "two", None],
        }
    )
    pq.write_table(table, tmp_path / "part-0.parquet")
    spec = InputSpec(uri=str(tmp_path))
    plan = plan_input(spec)
    assert plan.format == "parquet" and plan.total_items == 3
    rows = _rows(plan, spec)
    assert [r["member"] for r in rows] == ["row=0", "row=1", "row=2"]
    assert [r["error_code"] for r in rows] == [None, "missing_audio", None]
    assert rows[0]["reference"] == "one" and json.loads(rows[0]["metadata"]) == {"path": "x.wav"}


def test_corrupt_parquet_shard_becomes_one_error_row(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    spec = InputSpec(uri=str(tmp_path), format="parquet")
    rows = _rows(plan_input(spec), spec)
    assert len(rows) == 1 and rows[0]["error_code"] == "shard_corrupt"


def test_item_ids_are_stable_and_distinct():
    assert item_id("s3://b/x.tar", "k1") == item_id("s3://b/x.tar", "k1")
    assert len({item_id("s3://b/x.tar", k) for k in ("k1", "k2", "")}) == 3


def test_limit_truncates_files(tmp_path):
    _files(tmp_path)
    assert plan_input(InputSpec(uri=str(tmp_path), limit=3)).total_items == 3


def test_done_ids_are_skipped_before_fetching_files_and_while_reading_shards(tmp_path):
    import numpy as np

    from pipeline.io.idset import IdSet

    _files(tmp_path)
    spec = InputSpec(uri=str(tmp_path))
    first = _rows(plan_input(spec), spec)
    done = IdSet(np.unique(np.array([r["item_id"] for r in first[:3]], dtype="S")))
    plan = plan_input(spec, done=done)
    assert plan.already_done == 3 and plan.total_items == 2
    assert {r["item_id"] for r in _rows(plan, spec)} == {r["item_id"] for r in first[3:]}

    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    _tar(shard_dir / "s.tar", [("k1.wav", b"A"), ("k2.wav", b"B")])
    sspec = InputSpec(uri=str(shard_dir))
    splan = plan_input(sspec)
    all_rows = _rows(splan, sspec)
    skip = IdSet(np.array([all_rows[0]["item_id"]], dtype="S"))
    left = [t for u in splan.units for t in read_unit(u, sspec, MAX, batch=3, done=skip)]
    assert [r["member"] for t in left for r in t.to_pylist()] == ["k2"]


def test_idset_membership():
    import numpy as np

    from pipeline.io.idset import IdSet

    ids = IdSet(np.unique(np.array(["b", "a", "c"], dtype="S")))
    assert "a" in ids and "c" in ids and "d" not in ids and len(ids) == 3
    assert "a" not in IdSet()
