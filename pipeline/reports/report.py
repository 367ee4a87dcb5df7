"""`report.json`, `report.md` and `report.html`, built from the written tables alone.

The tables are read through the views `audiobatch query` uses (`pipeline.query`): the
newest row per item and task (`latest`, `latest_classifications`, `latest_syntheses`),
`errors`, `errors_open`, `runs`. Everything is aggregated in DuckDB; Python sees grouped
rows and the handful of items a section shows (`pipeline.reports.asr`), so a million-row
output builds in seconds (benchmarks/RESULTS.md).

Corpus WER is total word edits over total reference words, never a mean of per-item
rates; the normaliser that produced the counts is named beside it. `run` restricts every
section to the rows one run wrote; `compare` names another task of this output or another
output whose same-named task is compared item by item (`pipeline.reports.compare`).
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from pipeline.spec import ReportSpec, StorageOptions


@dataclass(frozen=True)
class ReportRequest:
    """What to build: the output, its storage options, the report settings and the scope."""

    output: str
    storage: StorageOptions = field(default_factory=StorageOptions)
    settings: ReportSpec | None = None  # None: the spec of the newest run, else defaults
    run: str | None = None
    compare: str | None = None


def build_report(request: ReportRequest) -> dict:
    """Summarise the output's tables into a JSON-able dict (report.json's content)."""
    from pipeline.query import QueryError, connect

    base = {"output": request.output, "generated_at": _now(), "scope": {"run": request.run}}
    try:
        con = connect(request.output, request.storage)
    except QueryError as exc:
        return {**base, "empty": str(exc), **_no_tables()}
    cfg = request.settings or _settings_of_newest_run(con)
    return {**base, **_sections(con, request, cfg)}


def _sections(con, request: ReportRequest, cfg: ReportSpec) -> dict:
    from pipeline.reports.asr import Scope, asr_tasks, snapshot, task_section
    from pipeline.reports.classes import classification_sections, synthesis_sections
    from pipeline.reports.drift import drift
    from pipeline.reports.operations import errors_section, runs_section

    run = request.run
    if (
        run
        and not con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run]).fetchall()[0][0]
    ):
        from pipeline.query import QueryError

        raise QueryError(f"{request.output}: no run {run!r} in the runs table")
    snapshot(con)
    tasks = asr_tasks(con, run)
    return {
        "tasks": {t: task_section(con, Scope(t, run), cfg) for t in tasks},
        "comparisons": _comparisons(con, request, cfg, tasks),
        "compare": request.compare,
        "classifications": classification_sections(con, run),
        "syntheses": synthesis_sections(con, run),
        "errors": errors_section(con, run),
        "runs": runs_section(con, run),
        "drift": drift(con, cfg, run),
        "settings": cfg.model_dump(),
    }


def _comparisons(con, request: ReportRequest, cfg: ReportSpec, tasks: list[str]) -> list[dict]:
    from pipeline.reports.asr import LATEST
    from pipeline.reports.compare import compare, side

    run, other = request.run, request.compare
    if other and other not in tasks:
        return _compare_outputs(con, request, cfg, tasks)
    pairs = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1 :]]
    if other:
        pairs = [p for p in pairs if other in p]
    return [
        compare(con, a, side(LATEST, a, run), b, side(LATEST, b, run), cfg) for a, b in pairs[:6]
    ]


def _compare_outputs(con, request: ReportRequest, cfg: ReportSpec, tasks: list[str]) -> list[dict]:
    """Each task of this output against the same-named task of the other output (or, when
    each has one transcription task, those two). The other side's per-item counts and texts come over as Arrow
    and are registered on this connection, which cannot read outside its own output."""
    from pipeline.query import QueryError, connect
    from pipeline.reports.asr import LATEST
    from pipeline.reports.compare import compare, side

    try:
        theirs = connect(request.compare, request.storage)
    except QueryError as exc:
        raise QueryError(
            f"--compare {request.compare}: neither a task of this output "
            f"({', '.join(tasks) or 'none'}) nor a readable output: {exc}"
        ) from None
    their_tasks = [r[0] for r in theirs.execute("SELECT DISTINCT task FROM latest").fetchall()]
    out = []
    for task in tasks:
        only = len(tasks) == len(their_tasks) == 1
        match = task if task in their_tasks else (their_tasks[0] if only else None)
        if match is None:
            continue
        rows = theirs.sql(
            "SELECT item_id, task, ref_words, substitutions, deletions, insertions, text, run_id "
            "FROM latest WHERE task = ?",
            params=[match],
        ).to_arrow_table()
        con.register("compare_other", rows)
        name = f"{match} ({request.compare})"
        out.append(
            compare(
                con,
                task,
                side(LATEST, task, request.run),
                name,
                side("compare_other", match),
                cfg,
            )
        )
    return out


def _settings_of_newest_run(con) -> ReportSpec:
    """The `report` section of the newest run's spec; defaults when it has none."""
    rows = con.execute("SELECT spec_json FROM runs ORDER BY started_at DESC LIMIT 1").fetchall()
    row = rows[0] if rows else None
    if row:
        try:
            section = json.loads(row[0]).get("report")
            if isinstance(section, dict):
                return ReportSpec.model_validate(section)
        except ValueError:
            pass  # an older spec without (or with an unreadable) report section
    return ReportSpec()


def _no_tables() -> dict:
    return {
        "tasks": {},
        "comparisons": [],
        "classifications": {},
        "syntheses": {},
        "errors": {"total": 0, "by_code": {}, "by_stage": {}, "by_task": {}, "examples": []},
        "runs": [],
        "drift": None,
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_output(spec) -> dict:
    """Build the report of `spec`'s whole output and write it next to the tables (what
    `run` does after every run; `run_job` does it too). Returns the report."""
    from pipeline.io.storage import arrow_filesystem, storage_errors

    with storage_errors(spec.output.uri, "output", spec.output.storage):
        fs, root = arrow_filesystem(spec.output.uri, spec.output.storage)
        request = ReportRequest(spec.output.uri, spec.output.storage, settings=spec.report)
        report = build_report(request)
        write_report(fs, root, report)
    return report


def write_report(fs: pafs.FileSystem, root: str, report: dict) -> tuple[str, str, str]:
    """Write report.json, report.md and report.html next to the tables; return their paths."""
    from pipeline.reports.html import render_html

    names = ("report.json", "report.md", "report.html")
    paths = tuple(posixpath.join(root, n) for n in names)
    texts = (
        json.dumps(report, indent=2, default=str),
        render_markdown(report),
        render_html(report),
    )
    for path, text in zip(paths, texts, strict=True):
        with fs.open_output_stream(path) as f:
            f.write(text.encode())
    return paths


def render_markdown(report: dict) -> str:
    """A short human-readable page of the same numbers."""
    lines = [f"# audiobatch report\n\nOutput: `{report['output']}`\n"]
    if report.get("empty"):
        lines.append(report["empty"] + "\n")
    for task, s in report["tasks"].items():
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
    lines += _classification_lines(report.get("classifications", {}))
    lines += _synthesis_lines(report.get("syntheses", {}))
    e = report["errors"]
    lines.append(f"## Errors: {e['total']:,}\n")
    lines += [f"- `{code}`: {n:,}" for code, n in e["by_code"].items()]
    if len(e.get("by_task", {})) > 1:
        lines.append("- by task: " + ", ".join(f"{t} {n:,}" for t, n in e["by_task"].items()))
    if e["examples"]:
        lines.append("\n| stage | code | item | message |\n|---|---|---|---|")
        lines += [
            f"| {x['stage']} | {x['error_code']} | {x['source_uri']}{'#' + x['member'] if x['member'] else ''} | {x['error_message'][:120]} |"
            for x in e["examples"]
        ]
    lines.append(
        "\n## Runs\n\n| run | status | items | errors | audio h | wall s | realtime x | stages (audio s per busy s) |\n|---|---|---:|---:|---:|---:|---:|---|"
    )
    for r in report["runs"]:
        stages = ", ".join(
            f"{s['stage']}: {s['realtime_factor_per_worker']:.0f}x"
            for s in r["stages"] or []
            if s["realtime_factor_per_worker"]
        )
        rtf = f"{r['realtime_factor']:.1f}" if r["realtime_factor"] else "-"
        lines.append(
            f"| {r['run_id']} | {r['status']} | {r['items']:,} | {r['items_failed']:,} | {r['audio_s'] / 3600:.3f} | {r['wall_s']:.1f} | {rtf} | {stages} |"
        )
    lines += [
        f"\nRun {r['run_id']}: {len(r['changed_sources']):,} source(s) changed since processed: "
        + ", ".join(r["changed_sources"])
        for r in report["runs"]
        if r.get("changed_sources")
    ]
    return "\n".join(lines) + "\n"


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
