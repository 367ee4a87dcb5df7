import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.columns import TEXT_ITEM_SCHEMA
from pipeline.errors import InputError
from pipeline.io.idset import IdSet
from pipeline.io.listing import plan_input
from pipeline.io.reading import read_unit
from pipeline.io.units import item_id
from pipeline.spec import InputSpec


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(spec: InputSpec, done=None):
    plan = plan_input(spec)
    tables = [t for u in plan.units for t in read_unit(u, spec, 0, batch=2, done=done)]
    return plan, pa.concat_tables(tables).to_pylist() if tables else []


def test_rows_carry_text_speaker_embedding_and_metadata(tmp_path):
    _jsonl(
        tmp_path / "a.jsonl",
        [
            {"id": "t1", "text": "Hello there.", "speaker": 7, "lang": "en"},
            {"id": "t2", "text": "Second one.", "speaker_embedding": [0.5, -1, 2]},
            {"id": "t3", "text": "Third."},
        ],
    )
    plan, rows = _read(InputSpec(uri=str(tmp_path), format="texts"))
    assert plan.format == "texts" and len(plan.units) == 1
    assert [r["text_id"] for r in rows] == ["t1", "t2", "t3"]
    first = rows[0]
    assert first["item_id"] == item_id(first["source_uri"], "t1")
    assert (first["text"], first["reference"], first["speaker"]) == ("Hello there.",) * 2 + ("7",)
    assert json.loads(first["metadata"]) == {"lang": "en"}
    assert rows[1]["speaker_embedding"] == [0.5, -1.0, 2.0]
    assert all(r["error_code"] is None for r in rows)


def test_bad_rows_become_error_rows_with_unique_ids(tmp_path):
    _jsonl(
        tmp_path / "a.jsonl",
        [
            {"id": "t1", "text": "ok"},
            {"id": "t1", "text": "again"},
            {"text": "no id"},
            {"id": "t4", "text": "  "},
            {"id": "t5", "text": "x", "speaker_embedding": ["a", "b"]},
        ],
    )
    _, rows = _read(InputSpec(uri=str(tmp_path), format="texts"))
    codes = [r["error_code"] for r in rows]
    assert codes == [None, "duplicate_id", "invalid_input", "empty", "invalid_input"]
    assert len({r["item_id"] for r in rows}) == len(rows)
    assert [r["member"] for r in rows[:3]] == ["t1", "row=1", "row=2"]


def test_csv_and_parquet_tables_and_custom_columns(tmp_path):
    (tmp_path / "a.csv").write_text("key,sentence\nk1,From CSV.\n")
    pq.write_table(pa.table({"key": ["k2"], "sentence": ["From Parquet."]}), tmp_path / "b.parquet")
    spec = InputSpec(uri=str(tmp_path), format="texts", id_column="key", text_column="sentence")
    plan, rows = _read(spec)
    assert [u.num_items for u in plan.units] == [None, 1]  # Parquet counts from its footer
    assert [(r["text_id"], r["text"]) for r in rows] == [
        ("k1", "From CSV."),
        ("k2", "From Parquet."),
    ]


def test_a_table_without_the_columns_is_one_shard_error(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"name": "x", "text": "y"}])
    (tmp_path / "b.jsonl").write_text("{not json\n")
    _, rows = _read(InputSpec(uri=str(tmp_path), format="texts"))
    assert [r["error_code"] for r in rows] == ["shard_corrupt", "shard_corrupt"]
    assert "'id'" in rows[0]["error_message"] and "not valid JSON" in rows[1]["error_message"]


def test_done_ids_are_skipped_and_schema_is_fixed(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"id": f"t{i}", "text": f"text {i}"} for i in range(5)])
    spec = InputSpec(uri=str(tmp_path), format="texts")
    _, rows = _read(spec)
    done = IdSet(np.array(sorted([rows[1]["item_id"], rows[3]["item_id"]]), dtype="S24"))
    plan = plan_input(spec)
    tables = list(read_unit(plan.units[0], spec, 0, batch=2, done=done))
    assert all(t.schema == TEXT_ITEM_SCHEMA for t in tables)
    assert [r["text_id"] for t in tables for r in t.to_pylist()] == ["t0", "t2", "t4"]


def test_no_text_tables_is_an_input_error(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(InputError, match="no text tables"):
        plan_input(InputSpec(uri=str(tmp_path), format="texts"))
