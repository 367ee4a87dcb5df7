"""`report.json` and `report.md`, built from the written tables (all runs so far).

Corpus WER is total word edits over total reference words, never a mean of
per-item rates; the normaliser that produced the counts is named beside it.
"""

from __future__ import annotations

import json
import posixpath
from collections import defaultdict

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.io.tables import read_table


def build_report(fs: pafs.FileSystem, root: str) -> dict:
    """Summarise the output tables under `root` into a JSON-able dict."""
    from pipeline.reports.labels import label_distribution
    from pipeline.reports.syntheses import synthesis_summary

    transcripts = read_table(fs, root, "transcripts")
    classifications = read_table(fs, root, "classifications")
    syntheses = read_table(fs, root, "syntheses")
    errors = read_table(fs, root, "errors")
    runs = read_table(fs, root, "runs")
    return {
        "output": root,
        "tasks": _tasks(transcripts),
        "classifications": label_distribution(classifications) if classifications else {},
        "syntheses": synthesis_summary(syntheses) if syntheses else {},
        "errors": _errors(errors),
        "runs": _runs(runs),
    }


def write_report(fs: pafs.FileSystem, root: str, report: dict) -> tuple[str, str]:
    """Write report.json and report.md next to the tables; return their paths."""
    paths = posixpath.join(root, "report.json"), posixpath.join(root, "report.md")
    for path, text in zip(
        paths, (json.dumps(report, indent=2, default=str), render_markdown(report)), strict=True
    ):
        with fs.open_output_stream(path) as f:
            f.write(text.encode())
    return paths


def _tasks(t: pa.Table | None) -> dict:
    if t is None:
        return {}
    rows = t.select(
        [
            "task",
            "shard",
            "model",
            "duration_s",
            "normalizer",
            "ref_words",
            "substitutions",
            "deletions",
            "insertions",
            "ref_chars",
            "char_edits",
            "language",
            "flags",
        ]
    ).to_pylist()
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    return {task: _task_summary(items) for task, items in sorted(by_task.items())}


def _task_summary(items: list[dict]) -> dict:
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for r in items:
        by_shard[r["shard"]].append(r)
    return {
        "model": sorted({r["model"] for r in items if r["model"]}),
        "items": len(items),
        "audio_hours": sum(r["duration_s"] or 0.0 for r in items) / 3600,
        **_scores(items),
        **_languages_and_flags(items),
        "by_shard": {s: {"items": len(rs), **_scores(rs)} for s, rs in sorted(by_shard.items())},
    }


def _languages_and_flags(items: list[dict]) -> dict:
    """Language counts and likely-hallucination flag counts, for tasks that write them."""
    out: dict = {}
    languages: dict[str, int] = defaultdict(int)
    for r in items:
        if r["language"]:
            languages[r["language"]] += 1
    if languages:
        out["languages"] = dict(sorted(languages.items(), key=lambda kv: (-kv[1], kv[0])))
    checked = [r["flags"] for r in items if r["flags"] is not None]
    if checked:
        by_flag: dict[str, int] = defaultdict(int)
        for flags in checked:
            for flag in flags:
                by_flag[flag] += 1
        out["flags"] = {
            "checked_items": len(checked),
            "flagged_items": sum(1 for f in checked if f),
            "by_flag": dict(sorted(by_flag.items())),
        }
    return out


def _scores(items: list[dict]) -> dict:
    scored = [r for r in items if r["ref_words"] is not None]
    ref_words = sum(r["ref_words"] for r in scored)
    edits = sum(r["substitutions"] + r["deletions"] + r["insertions"] for r in scored)
    ref_chars = sum(r["ref_chars"] for r in scored)
    char_edits = sum(r["char_edits"] for r in scored)
    return {
        "scored_items": len(scored),
        "normalizer": sorted({r["normalizer"] for r in scored}),
        "ref_words": ref_words,
        "word_edits": edits,
        "wer": edits / ref_words if ref_words else None,
        "cer": char_edits / ref_chars if ref_chars else None,
    }


def _errors(e: pa.Table | None) -> dict:
    if e is None:
        return {"total": 0, "by_code": {}, "by_stage": {}, "by_task": {}, "examples": []}
    names = ["stage", "task", "error_code", "source_uri", "member", "error_message"]
    rows = e.select(names).to_pylist()
    by_code: dict[str, int] = defaultdict(int)
    by_stage: dict[str, int] = defaultdict(int)
    by_task: dict[str, int] = defaultdict(int)
    for r in rows:
        by_code[r["error_code"]] += 1
        by_stage[r["stage"]] += 1
        by_task[r["task"] or "(all tasks)"] += 1
    return {
        "total": len(rows),
        "by_code": dict(sorted(by_code.items())),
        "by_stage": dict(sorted(by_stage.items())),
        "by_task": dict(sorted(by_task.items())),
        "examples": rows[:10],
    }


def _runs(r: pa.Table | None) -> list[dict]:
    if r is None:
        return []
    keep = [
        "run_id",
        "status",
        "started_at",
        "wall_s",
        "items",
        "items_ok",
        "items_failed",
        "audio_s",
        "stages",
        "message",
    ]
    runs = sorted(r.select(keep).to_pylist(), key=lambda x: x["started_at"])
    for run in runs:
        run["realtime_factor"] = run["audio_s"] / run["wall_s"] if run["wall_s"] else None
        for s in run["stages"] or []:
            # Per stage: audio seconds per busy second of one worker (actor or task).
            s["realtime_factor_per_worker"] = s["audio_s"] / s["busy_s"] if s["busy_s"] else None
    return runs


def render_markdown(report: dict) -> str:
    """A short human-readable page of the same numbers."""
    lines = [f"# audiobatch report\n\nOutput: `{report['output']}`\n"]
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
