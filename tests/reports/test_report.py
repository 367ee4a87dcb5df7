import json
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.io.tables import partition_dir, write_parquet
from pipeline.reports.report import ReportRequest, build_report, render_markdown, write_report
from pipeline.schemas import TRANSCRIPTS, conform


def _transcript(item, shard, ref_words, s, d, i, ref_chars, char_edits, task="ctc"):
    row = {f.name: None for f in TRANSCRIPTS}
    row.update(
        item_id=item,
        source_uri=f"/c/{item}.wav",
        member="",
        shard=shard,
        duration_s=2.0,
        model="m",
        text="x",
        normalizer="basic",
        ref_words=ref_words,
        substitutions=s,
        deletions=d,
        insertions=i,
        ref_chars=ref_chars,
        char_edits=char_edits,
        run_id="r1",
        task=task,
    )
    return row


def test_report_corpus_wer_is_total_edits_over_total_words(tmp_path):
    fs = pafs.LocalFileSystem()
    rows = [
        _transcript("a", "s1", 10, 1, 0, 0, 40, 2),  # 10% WER
        _transcript("b", "s1", 1, 1, 0, 0, 4, 4),  # 100% WER: a mean of rates would say 55%
        _transcript("c", "s2", 0, 0, 0, 0, 0, 0),  # no reference words
    ]
    rows[2]["ref_words"] = None
    table = conform(pa.Table.from_pylist(rows, schema=TRANSCRIPTS), "transcripts")
    write_parquet(
        fs, partition_dir(str(tmp_path), "transcripts", "task", "ctc") + "/p.parquet", table
    )
    report = build_report(ReportRequest(str(tmp_path)))
    task = report["tasks"]["ctc"]
    assert task["items"] == 3 and task["scored_items"] == 2
    assert task["wer"] == 2 / 11
    assert task["cer"] == 6 / 44
    assert task["by_shard"]["s1"]["wer"] == 2 / 11 and task["by_shard"]["s2"]["wer"] is None
    assert report["errors"]["total"] == 0
    json_path, md_path, _ = write_report(fs, str(tmp_path), report)
    assert json.loads(Path(json_path).read_text())["tasks"]["ctc"]["ref_words"] == 11
    md = Path(md_path).read_text()
    assert "corpus WER: 18.18%" in md and "| s1 | 2 | 18.18% |" in md


def test_markdown_of_an_empty_output_still_renders():
    md = render_markdown(
        {
            "output": "/x",
            "tasks": {},
            "errors": {"total": 0, "by_code": {}, "by_stage": {}, "examples": []},
            "runs": [],
        }
    )
    assert "Errors: 0" in md


def test_languages_flags_and_errors_by_task_are_counted(tmp_path):
    fs = pafs.LocalFileSystem()
    rows = [_transcript(x, "s1", 1, 0, 0, 0, 1, 0, task="w") for x in "abcd"]
    for row, lang, flags in zip(
        rows,
        ["en", "en", "de", None],
        [[], ["repeated_ngrams"], ["repeated_ngrams", "too_long"], None],
        strict=True,
    ):
        row.update(language=lang, flags=flags)
    table = conform(pa.Table.from_pylist(rows, schema=TRANSCRIPTS), "transcripts")
    write_parquet(
        fs, partition_dir(str(tmp_path), "transcripts", "task", "w") + "/p.parquet", table
    )
    error = {
        "item_id": "e",
        "source_uri": "/c/e.wav",
        "member": "",
        "shard": "s1",
        "task": "w",
        "error_code": "model_failed",
        "error_message": "boom",
        "run_id": "r1",
        "metadata": None,
        "stage": "w",
    }
    errors = conform(pa.Table.from_pylist([error]), "errors")
    write_parquet(fs, partition_dir(str(tmp_path), "errors", "stage", "w") + "/p.parquet", errors)
    report = build_report(ReportRequest(str(tmp_path)))
    task = report["tasks"]["w"]
    assert task["languages"] == {"en": 2, "de": 1}
    assert task["flags"] == {
        "checked_items": 3,
        "flagged_items": 2,
        "by_flag": {"repeated_ngrams": 2, "too_long": 1},
    }
    assert report["errors"]["by_task"] == {"w": 1}
    md = render_markdown(report)
    assert "languages: en 2, de 1" in md and "2 of 3 items flagged" in md
