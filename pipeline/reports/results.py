"""The result tables a report covers, one entry each in `RESULT_REPORTS`.

An entry names the output table (`schemas.TABLES`), the key its sections have in
report.json, how the sections are built from the query views (`pipeline.reports.asr`,
`pipeline.reports.classes`), the line `audiobatch run` prints for each of its tasks
(`cli._summary`), its part of report.md (`report.render_markdown`), its plots in
report.html (`reports/table_plots.py`) and its part of report.html's template
(`templates/tables/<table>.html.j2`: a `nav` and a `sections` macro; its sections' ids are
`<anchor>-<task>`). `build_report`, the run summary, the markdown page, the plots and
report.html's nav and sections go through the entries in order, so none of them has a
branch per table: a new result table is its schema, its sections, and an entry here with
its template part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.reports import table_plots as plots
from pipeline.spec import ReportSpec


@dataclass(frozen=True)
class ResultReport:
    """How one result table appears in the report, the run summary, report.md and report.html."""

    table: str  # the output table (`schemas.TABLES`)
    key: str  # its sections' key in report.json: task -> section
    sections: Callable[[Any, str | None, ReportSpec], dict]  # (con, run, settings) -> sections
    summary: Callable[[str, dict], str]  # (task, section) -> the run summary's line
    markdown: Callable[[dict], list[str]]  # sections -> report.md lines
    plots: Callable[[str, dict], dict[str, str]]  # (task, section) -> report.html's plots
    anchor: str  # the id prefix of its sections in report.html: `<anchor>-<task>`

    @property
    def template(self) -> str:
        """Its part of report.html, under templates/: `nav` and `sections` macros."""
        return f"tables/{self.table}.html.j2"


def _transcript_sections(con, run: str | None, cfg: ReportSpec) -> dict:
    from pipeline.reports.asr import Scope, asr_tasks, task_section

    return {t: task_section(con, Scope(t, run), cfg) for t in asr_tasks(con, run)}


def _classification_sections(con, run: str | None, cfg: ReportSpec) -> dict:
    from pipeline.reports.classes import classification_sections

    return classification_sections(con, run)


def _synthesis_sections(con, run: str | None, cfg: ReportSpec) -> dict:
    from pipeline.reports.classes import synthesis_sections

    return synthesis_sections(con, run)


def _transcript_summary(task: str, s: dict) -> str:
    wer = "n/a" if s["wer"] is None else f"{100 * s['wer']:.2f}%"
    cer = "n/a" if s["cer"] is None else f"{100 * s['cer']:.2f}%"
    return (
        f"  {task}: {s['items']:,} items in table, corpus WER {wer}, CER {cer} "
        f"({s['word_edits']:,} edits / {s['ref_words']:,} ref words, normaliser {', '.join(s['normalizer']) or 'n/a'})"
    )


def _classification_summary(task: str, s: dict) -> str:
    top = ", ".join(x["label"] for x in (s.get("labels") or s.get("segments") or [])[:3])
    return f"  {task}: {s['items']:,} items in table, top labels: {top or 'none'}"


def _synthesis_summary(task: str, s: dict) -> str:
    wer = s["roundtrip"]["wer"]
    rt = "n/a" if wer is None else f"{100 * wer:.2f}%"
    return (
        f"  {task}: {s['items']:,} syntheses, {s['audio_hours']:.3f} h audio, round-trip WER "
        f"{rt}, {s['runaway']:,} runaway, {s['empty']:,} empty"
    )


def _transcript_lines(tasks: dict) -> list[str]:
    lines = []
    for task, s in tasks.items():
        lines.append(f"## Task `{task}` ({', '.join(s['model'])})\n")
        lines.append(f"- items: {s['items']:,}, audio: {s['audio_hours']:.3f} h")
        lines.append(
            f"- corpus WER: {_pct(s['wer'])}, CER: {_pct(s['cer'])} over {s['scored_items']:,} items with references "
            f"({s['word_edits']:,} edits / {s['ref_words']:,} reference words; normaliser: {', '.join(s['normalizer']) or 'n/a'})"
        )
        if "languages" in s:
            top = list(s["languages"].items())[:8]
            lines.append("- languages: " + ", ".join(f"{k} {n:,}" for k, n in top))
        if "flags" in s:
            f = s["flags"]
            detail = ", ".join(f"{k} {n:,}" for k, n in f["by_flag"].items()) or "none"
            lines.append(
                f"- likely hallucinations: {f['flagged_items']:,} of {f['checked_items']:,} "
                f"items flagged ({detail})"
            )
        lines.append("")
        lines.append("| shard | items | WER | CER |\n|---|---:|---:|---:|")
        lines += [
            f"| {shard} | {v['items']:,} | {_pct(v['wer'])} | {_pct(v['cer'])} |"
            for shard, v in s["by_shard"].items()
        ]
        lines.append("")
    return lines


def _classification_lines(tasks: dict) -> list[str]:
    lines = []
    for task, s in tasks.items():
        lines.append(f"## Task `{task}`: {s['items']:,} items, {s['audio_s'] / 3600:.3f} h\n")
        if s.get("labels"):
            lines.append("| label | items | ranked first | mean score |\n|---|---:|---:|---:|")
            lines += [
                f"| {x['label']} | {x['items']:,} | {x['first']:,} | {x['mean_score']:.3f} |"
                for x in s["labels"]
            ]
        if s.get("segments"):
            lines.append(
                "| label | segments | seconds | share of audio | mean score |\n"
                "|---|---:|---:|---:|---:|"
            )
            lines += [
                f"| {x['label']} | {x['segments']:,} | {x['seconds']:.1f} | "
                f"{_pct(x['share_of_audio'])} | {x['mean_score'] or 0:.3f} |"
                for x in s["segments"]
            ]
        lines.append("")
    return lines


def _synthesis_lines(tasks: dict) -> list[str]:
    lines = []
    for task, s in tasks.items():
        rt = s["roundtrip"]
        lines.append(f"## Synthesis `{task}` ({', '.join(s['model'])})\n")
        lines.append(
            f"- items: {s['items']:,}, audio: {s['audio_hours']:.3f} h, runaway: {s['runaway']:,}, "
            f"empty: {s['empty']:,}"
        )
        if rt["task"]:
            lines.append(
                f"- round trip through `{rt['task']}`: WER {_pct(rt['wer'])}, CER {_pct(rt['cer'])} "
                f"over {rt['scored_items']:,} items ({rt['word_edits']:,} edits / "
                f"{rt['ref_words']:,} words; normaliser: {', '.join(rt['normalizer']) or 'n/a'})"
            )
        for name, st in s["signal"].items():
            if st:
                lines.append(
                    f"- {name}: mean {st['mean']:.3f}, median {st['median']:.3f}, max {st['max']:.3f}"
                )
        if s["worst"]:
            lines.append(
                "\n| text id | WER | runaway | empty | text | transcript |\n|---|---:|---|---|---|---|"
            )
            lines += [
                f"| {w['text_id']} | {_pct(w['wer'])} | {w['runaway']} | {w['empty']} | "
                f"{(w['text'] or '')[:60]} | {(w['transcript'] or '')[:60]} |"
                for w in s["worst"]
            ]
        lines.append("")
    return lines


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


RESULT_REPORTS: tuple[ResultReport, ...] = (
    ResultReport(
        table="transcripts",
        key="tasks",
        sections=_transcript_sections,
        summary=_transcript_summary,
        markdown=_transcript_lines,
        plots=plots.transcript_plots,
        anchor="task",
    ),
    ResultReport(
        table="classifications",
        key="classifications",
        sections=_classification_sections,
        summary=_classification_summary,
        markdown=_classification_lines,
        plots=plots.classification_plots,
        anchor="cls",
    ),
    ResultReport(
        table="syntheses",
        key="syntheses",
        sections=_synthesis_sections,
        summary=_synthesis_summary,
        markdown=_synthesis_lines,
        plots=plots.synthesis_plots,
        anchor="syn",
    ),
)
