"""Several tasks over one corpus in one job: CTC, Whisper, a clip classifier and a frame
classifier share one decode on the local Ray cluster; each task writes its own table,
every item lands exactly once per task, and a re-run adds nothing. The tasks leave
`num_cpus` at its default: the 2-CPU cluster has no GPU, so they share what decode leaves."""

from __future__ import annotations

import collections

import pyarrow.fs as pafs
import pytest

from pipeline.io.tables import read_table
from pipeline.reports.report import ReportRequest, build_report
from pipeline.runner import run_job
from pipeline.spec import parse_spec
from pipeline.testing.corpus import build_files_corpus
from pipeline.testing.tiny_classifiers import build_tiny_ast, build_tiny_frame_classifier
from pipeline.testing.tiny_ctc import build_tiny_ctc
from pipeline.testing.tiny_whisper import build_tiny_whisper

pytestmark = pytest.mark.integration

TASKS = ("ctc", "whisper", "tags", "vad")


def test_four_tasks_share_one_decode_and_land_once_each(ray_address, tmp_path):
    models = tmp_path / "models"
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    items = build_files_corpus(str(corpus), n_items=12, seed=4, broken=True, manifest="jsonl")
    # No num_cpus: on the 2-CPU cluster the four actor pools share what decode leaves.
    small = {"batch_size": 8}
    spec = parse_spec(
        {
            "name": "multi",
            "input": {"uri": str(corpus), "manifest": str(corpus / "manifest.jsonl")},
            "tasks": [
                {"kind": "ctc", "model": build_tiny_ctc(str(models / "ctc")), **small},
                {
                    "kind": "whisper",
                    "model": build_tiny_whisper(str(models / "whisper")),
                    "language": "en",
                    "max_new_tokens": 8,
                    **small,
                },
                {
                    "kind": "classify",
                    "name": "tags",
                    "model": build_tiny_ast(str(models / "ast")),
                    "top_k": 2,
                    **small,
                },
                {
                    "kind": "frames",
                    "name": "vad",
                    "model": build_tiny_frame_classifier(str(models / "frames")),
                    **small,
                },
            ],
            "output": {"uri": str(out)},
            "runtime": {"read_batch_items": 6, "decode_batch_size": 6, "progress_interval_s": 60},
        }
    )
    printed = []
    result = run_job(spec, out=printed.append)
    assert result.status == "succeeded"
    assert any("ctc, whisper, tags, vad get 0.25 CPU each" in line for line in printed)
    fs = pafs.LocalFileSystem()
    transcripts = read_table(fs, str(out), "transcripts").to_pylist()
    classifications = read_table(fs, str(out), "classifications").to_pylist()
    errors = read_table(fs, str(out), "errors").to_pylist()

    good = sum(1 for it in items if it.expected == "ok")
    broken = len(items) - good
    rows = collections.Counter(r["task"] for r in transcripts + classifications)
    task_errors = collections.Counter(r["task"] for r in errors if r["task"])
    for task in TASKS:  # each task: every decodable item, in its table or as its error
        assert rows[task] + task_errors[task] == good, task
    assert sum(1 for r in errors if r["task"] is None) == broken  # decode failed once, for all
    # Decode ran once per item, not once per task.
    decode = next(
        s
        for s in read_table(fs, str(out), "runs").to_pylist()[0]["stages"]
        if s["stage"] == "decode"
    )
    assert decode["items"] == len(items)

    by_task = {t: [r for r in transcripts + classifications if r["task"] == t] for t in TASKS}
    assert all(r["text"] is not None for r in by_task["ctc"] + by_task["whisper"])
    assert all(r["language"] == "en" and r["flags"] is not None for r in by_task["whisper"])
    assert all(1 <= len(r["labels"]) <= 2 for r in by_task["tags"])
    assert all(r["segments"] is not None and r["labels"] is None for r in by_task["vad"])

    report = build_report(ReportRequest(str(out)))
    # run_job from Python writes the same report the CLI does, next to the tables.
    assert result.report is not None and set(result.report["tasks"]) == set(report["tasks"])
    assert all((out / f"report.{ext}").stat().st_size for ext in ("json", "md", "html"))
    assert set(report["tasks"]) == {"ctc", "whisper"}
    assert set(report["classifications"]) == {"tags", "vad"}
    assert report["classifications"]["tags"]["labels"]

    again = run_job(spec, out=lambda _: None)
    assert again.counters.items == 0
    total = len(read_table(fs, str(out), "transcripts")) + len(
        read_table(fs, str(out), "classifications")
    )
    assert total == len(transcripts) + len(classifications)
