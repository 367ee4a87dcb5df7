"""The result-table registry the report, the run summary and report.md go through."""

from pipeline.contract import MODEL_STAGES
from pipeline.query.views import CONVENIENCE_VIEWS, latest_view
from pipeline.reports.report import ReportRequest, build_report, render_markdown
from pipeline.reports.results import RESULT_REPORTS
from pipeline.schemas import RESULT_TABLES, TABLES


def test_every_table_a_task_kind_writes_has_one_report_entry():
    tables = [entry.table for entry in RESULT_REPORTS]
    assert sorted(tables) == sorted({kind.table for kind in MODEL_STAGES.values()})
    assert len(set(tables)) == len(tables)
    assert len({entry.key for entry in RESULT_REPORTS}) == len(RESULT_REPORTS)
    assert all(TABLES[t][1] == "task" for t in tables)
    assert tuple(tables) == RESULT_TABLES  # report order: the result tables' order


def test_every_result_table_has_its_latest_view():
    assert [latest_view(t) for t in RESULT_TABLES] == [
        "latest",
        "latest_classifications",
        "latest_syntheses",
    ]
    assert all(latest_view(t) in CONVENIENCE_VIEWS for t in RESULT_TABLES)


def test_an_output_without_tables_has_an_empty_section_for_every_entry(tmp_path):
    (tmp_path / "out").mkdir()
    report = build_report(ReportRequest(str(tmp_path / "out")))
    assert all(report[entry.key] == {} for entry in RESULT_REPORTS)
    assert "## Errors: 0" in render_markdown(report)


def test_each_entry_gives_its_own_summary_line_and_markdown():
    section = {
        "items": 2,
        "audio_hours": 0.5,
        "runaway": 0,
        "empty": 1,
        "model": ["m"],
        "roundtrip": {"task": None, "wer": None},
        "signal": {},
        "worst": [],
    }
    entry = next(e for e in RESULT_REPORTS if e.table == "syntheses")
    assert entry.summary("tts", section) == (
        "  tts: 2 syntheses, 0.500 h audio, round-trip WER n/a, 0 runaway, 1 empty"
    )
    assert entry.markdown({"tts": section})[:2] == [
        "## Synthesis `tts` (m)\n",
        "- items: 2, audio: 0.500 h, runaway: 0, empty: 1",
    ]


def test_each_tables_plots_reach_the_page(tmp_path):
    from pipeline.reports.html import render_html

    (tmp_path / "out").mkdir()
    report = build_report(ReportRequest(str(tmp_path / "out")))
    del report["empty"]  # the page then shows the sections below
    hist = {"edges": [0.0, 0.5, 1.0], "counts": [1, 2]}
    report["classifications"] = {
        "tags": {"items": 3, "audio_s": 6.0, "labels": [], "score_hist": hist}
    }
    report["syntheses"] = {
        "tts": {
            "items": 2,
            "audio_hours": 0.1,
            "runaway": 0,
            "empty": 0,
            "model": ["m"],
            "roundtrip": {"task": None},
            "signal": {},
            "worst": [],
            "chars_per_s_hist": hist,
        }
    }
    page = render_html(report)
    assert "Top-1 score" in page and "Speaking rate" in page
    assert page.count("<svg") == 2
