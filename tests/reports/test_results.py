"""The result-table registry the report, the run summary, report.md and report.html go through."""

from dataclasses import replace

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


EVIL = "<script>alert(1)</script>"


def _every_table(root: str) -> dict:
    """A real output with one task of each result table, and its report."""
    from tests.reports.outputs import run_row, transcript, write
    from tests.reports.test_syntheses import _row as synthesis

    write(root, "transcripts", "ctc", [transcript("a", "the cat sat", "the bat sat")])
    label = {"label": EVIL, "score": 0.9}
    row = dict(item_id="a", source_uri="/c/a.wav", member="", shard="s", duration_s=2.0)
    write(
        root,
        "classifications",
        "sounds",
        [row | {"model": "ast", "run_id": "r1", "labels": [label]}],
    )
    write(root, "syntheses", "tts", [synthesis("t1", 3, 1) | {"text": EVIL}])
    run_row(root, "r1", 1, 3)
    return build_report(ReportRequest(root))


def test_each_entrys_template_part_renders_its_nav_and_sections(tmp_path):
    from pipeline.reports.html import _context, _environment, render_html

    report = _every_table(str(tmp_path / "out"))
    page = render_html(report)
    nav = page[page.index("<nav>") : page.index("</nav>")]
    env, context = _environment(), _context(report)
    at = []
    for entry in RESULT_REPORTS:
        (task,) = report[entry.key]
        part = env.get_template(entry.template).make_module(context)
        links, sections = (
            str(part.nav(entry, report[entry.key])),
            str(part.sections(entry, report[entry.key])),
        )
        assert f'<a href="#{entry.anchor}-{task}">{task}</a>' in links and links in nav
        assert sections.startswith(f'<section id="{entry.anchor}-{task}">')
        at.append(page.index("\n" + sections))
    assert at == sorted(at)  # in the registry's order, each part once
    assert "<script" not in page and page.count("&lt;script&gt;") >= 3
    # The page takes the ids from the entries: another anchor, other ids.
    moved = tuple(replace(e, anchor="x" + e.anchor) for e in RESULT_REPORTS)
    other = env.get_template("report.html.j2").render(context | {"results": moved})
    for entry in RESULT_REPORTS:
        (task,) = report[entry.key]
        assert (
            f'id="x{entry.anchor}-{task}"' in other and f'id="{entry.anchor}-{task}"' not in other
        )
        assert f'href="#x{entry.anchor}-{task}"' in other


def test_every_entry_names_a_template_part_with_its_own_anchor():
    from pipeline.reports.html import _environment

    env = _environment()
    for entry in RESULT_REPORTS:
        part = env.get_template(entry.template).module
        assert callable(part.nav) and callable(part.sections), entry.template
    anchors = [entry.anchor for entry in RESULT_REPORTS]
    assert len(set(anchors)) == len(anchors)
    assert not {"drift", "compare", "errors", "runs"} & set(anchors)
