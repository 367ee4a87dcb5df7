"""`report.json`, `report.md` and `report.html`, built from the written tables alone.

The tables are read through the views `audiobatch query` uses (`pipeline.query`): the
newest row per item and task (`latest`, `latest_classifications`, `latest_syntheses`),
`errors`, `errors_open`, `runs`. Everything is aggregated in DuckDB; Python sees grouped
rows and the handful of items a section shows (`pipeline.reports.asr`), so a million-row
output builds in seconds (benchmarks/RESULTS.md). Each result table's sections and its
part of report.md come from its entry in `pipeline.reports.results`.

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

from pipeline.reports.results import RESULT_REPORTS
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
    from pipeline.reports.asr import snapshot
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
    tables = {entry.key: entry.sections(con, run, cfg) for entry in RESULT_REPORTS}
    asr = tables.pop("tasks")  # the transcription tasks, which comparisons pair up
    return {
        "tasks": asr,
        "comparisons": _comparisons(con, request, cfg, list(asr)),
        "compare": request.compare,
        **tables,
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
        **{entry.key: {} for entry in RESULT_REPORTS},
        "comparisons": [],
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
    for entry in RESULT_REPORTS:
        lines += entry.markdown(report.get(entry.key, {}))
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
