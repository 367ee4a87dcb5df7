import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from pipeline.columns import ITEM_SCHEMA
from pipeline.io.tables import TaskInfo, read_table, split_batch, write_parquet
from pipeline.schemas import ERRORS, SchemaMismatch, conform


def _batch():
    base = pa.Table.from_pylist(
        [
            {
                "item_id": "a",
                "source_uri": "/c/a.wav",
                "member": "",
                "shard": ".",
                "reference": "hi there",
                "input_bytes": 5,
            },
            {
                "item_id": "b",
                "source_uri": "/c/b.wav",
                "member": "",
                "shard": ".",
                "error_stage": "decode",
                "error_code": "truncated",
                "error_message": "cut short",
                "input_bytes": 5,
            },
        ],
        schema=ITEM_SCHEMA,
    ).drop_columns(["audio_bytes"])
    extra = {
        "duration_s": pa.array([1.5, None]),
        "ctc__text": pa.array(["hi there", None]),
        "ctc__model": pa.array(["m1", None]),
        "ctc__words": pa.array(
            [
                [
                    {"word": "hi", "start": 0.0, "end": 0.2},
                    {"word": "there", "start": 0.3, "end": 0.6},
                ],
                None,
            ]
        ),
        "ctc__confidence": pa.array([0.9, None]),
        "ctc__ref_words": pa.array([2, None], pa.int32()),
        "ctc__wer": pa.array([0.0, None]),
    }
    for name, col in extra.items():
        base = base.append_column(name, col)
    return base


def test_split_batch_routes_rows_and_fills_missing_columns():
    out = split_batch(_batch(), [TaskInfo("ctc", "ctc", "m1")], "run1")
    assert set(out) == {("transcripts", "ctc"), ("errors", "decode")}
    t = out[("transcripts", "ctc")].to_pylist()[0]
    assert (
        t["item_id"] == "a"
        and t["text"] == "hi there"
        and t["run_id"] == "run1"
        and t["model"] == "m1"
    )
    assert t["language"] is None and t["cer"] is None  # not produced here: nulls, same schema
    e = out[("errors", "decode")].to_pylist()[0]
    assert (e["item_id"], e["error_code"], e["error_message"]) == ("b", "truncated", "cut short")
    assert e["task"] is None  # a decode failure is every task's


def test_a_task_failure_costs_only_that_task():
    batch = _batch()
    for task, text, code in (("ctc", "hi", None), ("whisper", None, "model_failed")):
        batch = batch.set_column(
            batch.column_names.index("ctc__text"), "ctc__text", pa.array(["hi there", None])
        )
        if task == "whisper":
            batch = batch.append_column("whisper__text", pa.array([text, None], pa.string()))
        values = {
            "error_stage": [task if code else None, None],
            "error_code": [code, None],
            "error_message": ["it raised" if code else None, None],
        }
        for name, col in values.items():
            batch = batch.append_column(f"{task}__{name}", pa.array(col, pa.string()))
    tasks = [TaskInfo("ctc", "ctc", "m1"), TaskInfo("whisper", "whisper", "w")]
    out = split_batch(batch, tasks, "run1")
    assert set(out) == {("transcripts", "ctc"), ("errors", "decode"), ("errors", "whisper")}
    assert out[("transcripts", "ctc")].column("item_id").to_pylist() == ["a"]
    e = out[("errors", "whisper")].to_pylist()
    assert [(r["item_id"], r["task"], r["error_code"]) for r in e] == [
        ("a", "whisper", "model_failed")
    ]


def test_conform_refuses_missing_columns_and_nulls_in_required():
    with pytest.raises(SchemaMismatch, match="missing columns"):
        conform(pa.table({"item_id": ["x"]}), "errors")
    names = ERRORS.names
    bad = pa.table({k: [None] for k in names}, schema=pa.schema([(k, pa.string()) for k in names]))
    with pytest.raises(SchemaMismatch, match="null values to non-nullable"):
        conform(bad, "errors")


def test_write_parquet_leaves_no_temp_and_reads_back_partitioned(tmp_path):
    fs = pafs.LocalFileSystem()
    out = split_batch(_batch(), [TaskInfo("ctc", "ctc", "m1")], "run1")
    write_parquet(
        fs, f"{tmp_path}/transcripts/task=ctc/part-1.parquet", out[("transcripts", "ctc")]
    )
    write_parquet(fs, f"{tmp_path}/errors/stage=decode/part-1.parquet", out[("errors", "decode")])
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["transcripts", "task=ctc", "part-1.parquet", "errors", "stage=decode", "part-1.parquet"]
    )
    t = read_table(fs, str(tmp_path), "transcripts")
    assert t.column("task").to_pylist() == ["ctc"]
    assert read_table(fs, str(tmp_path), "errors").column("stage").to_pylist() == ["decode"]
    assert read_table(fs, str(tmp_path), "runs") is None


def test_syntheses_rows_carry_the_roundtrip_transcript_and_scores():
    rows = pa.table(
        {
            "item_id": ["a", "b"],
            "source_uri": ["/t.jsonl"] * 2,
            "member": ["t1", "t2"],
            "shard": ["t.jsonl"] * 2,
            "text_id": ["t1", "t2"],
            "text": ["hello", "world"],
            "duration_s": [1.0, 2.0],
            "error_stage": pa.nulls(2, pa.string()),
            "error_code": pa.nulls(2, pa.string()),
            "error_message": pa.nulls(2, pa.string()),
            "tts__model": ["speecht5", "speecht5"],
            "tts__audio_uri": ["/o/t1.flac", "/o/t2.flac"],
            "asr__text": ["hello", "word"],
            "asr__wer": [0.0, 1.0],
            "asr__error_stage": [None, "score"],
            "asr__error_code": [None, "score_failed"],
            "asr__error_message": [None, "it raised"],
        }
    )
    tasks = [
        TaskInfo("tts", "synthesize", "speecht5", "syntheses", roundtrip="asr"),
        TaskInfo("asr", "ctc", "w2v"),
    ]
    out = split_batch(rows, tasks, "run1")
    syn = out[("syntheses", "tts")].to_pylist()
    assert [(r["text_id"], r["audio_uri"], r["roundtrip_task"]) for r in syn] == [
        ("t1", "/o/t1.flac", "asr"),
        ("t2", "/o/t2.flac", "asr"),
    ]
    # Where the ASR task failed, its numbers are not copied (its error row says why).
    assert [(r["transcript"], r["wer"]) for r in syn] == [("hello", 0.0), (None, None)]
    assert out[("transcripts", "asr")].column("item_id").to_pylist() == ["a"]
    assert out[("errors", "score")].column("task").to_pylist() == ["asr"]
