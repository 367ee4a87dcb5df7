"""report.html: the report dict (what report.json holds) rendered by Jinja2, plots inline.

The page is built from the report dict alone, so `audiobatch report` can rebuild it and a
test can render any dict. Autoescaping is on for the whole template: reference texts,
transcripts, labels and error messages are data, never markup. The plots are drawn here
from the aggregated numbers the dict holds (`pipeline.reports.plots`).
"""

from __future__ import annotations

from markupsafe import Markup

from pipeline.reports import plots as draw


def render_html(report: dict) -> str:
    """The whole self-contained HTML page for `report`."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.reports", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    shard_rows = {
        t: [{"value": k, **v} for k, v in s.get("by_shard", {}).items()]
        for t, s in report.get("tasks", {}).items()
    }
    return env.get_template("report.html.j2").render(
        report=report, plots=_plots(report), shard_rows=shard_rows
    )


def _plots(report: dict) -> dict[str, Markup]:
    out: dict[str, str] = {}
    for t, s in report.get("tasks", {}).items():
        out |= _asr_plots(t, s)
    for k, c in enumerate(report.get("comparisons", [])):
        if c.get("wer_a") is not None:
            out[f"compare:{k}"] = draw.bars(
                [c["a"], c["b"]],
                {"WER": [c["wer_a"], c["wer_b"]]},
                "WER on the same items",
                "WER",
                percent=True,
            )
    for t, s in report.get("classifications", {}).items():
        out |= _classification_plots(t, s)
    for t, s in report.get("syntheses", {}).items():
        h = s.get("chars_per_s_hist")
        if h and sum(h["counts"]):
            out[f"chars_per_s:{t}"] = draw.histogram(
                h["edges"], h["counts"], "Speaking rate", "characters per second"
            )
    runs = [r for r in report.get("runs", []) if r.get("wall_s")]
    if len(runs) > 1:
        out["runs"] = draw.lines(
            list(range(1, len(runs) + 1)),
            {"items/s": [r["items"] / r["wall_s"] for r in runs]},
            "Runs over time",
            "run (oldest first)",
            "items per wall second",
        )
    # matplotlib escapes the text it writes into SVG; the template inserts these as markup.
    return {k: Markup(v) for k, v in out.items()}


def _asr_plots(t: str, s: dict) -> dict[str, str]:
    out = {}
    buckets = [b for b in s.get("by_duration", []) if b.get("wer") is not None]
    if buckets:
        out[f"wer_by_duration:{t}"] = draw.bars(
            [b["value"] for b in buckets],
            {"WER": [b["wer"] for b in buckets]},
            "WER by duration",
            "WER",
            percent=True,
        )
    conf = s.get("wer_by_confidence")
    if conf and conf["bins"]:
        # Deciles of tied values share a mid-point; order by it so the line reads left to right.
        bins = sorted(conf["bins"], key=lambda b: ((b["low"] + b["high"]) / 2, b["wer"] or 0))
        out[f"wer_by_confidence:{t}"] = draw.lines(
            [(b["low"] + b["high"]) / 2 for b in bins],
            {"WER": [b["wer"] for b in bins]},
            f"WER by {conf['column']} (deciles)",
            conf["column"],
            "WER",
            percent=True,
        )
    for key, title, xlabel in (
        ("duration_hist", "Duration", "seconds"),
        ("speaking_rate_hist", "Speaking rate", "words per second"),
    ):
        h = s.get(key)
        if h and sum(h["counts"]):
            name = "duration_hist" if key == "duration_hist" else "speaking_rate"
            out[f"{name}:{t}"] = draw.histogram(h["edges"], h["counts"], title, xlabel)
    return out


def _classification_plots(t: str, s: dict) -> dict[str, str]:
    out = {}
    if s.get("labels"):
        top = s["labels"][:12]
        out[f"labels:{t}"] = draw.bars(
            [x["label"] for x in top],
            {"items": [x["items"] for x in top]},
            "Label distribution",
            "items",
        )
    h = s.get("score_hist")
    if h and sum(h["counts"]):
        out[f"scores:{t}"] = draw.histogram(h["edges"], h["counts"], "Top-1 score", "score")
    if s.get("segments"):
        top = s["segments"][:12]
        out[f"time_share:{t}"] = draw.bars(
            [x["label"] for x in top],
            {"share": [x["share_of_audio"] for x in top]},
            "Share of audio per label",
            "share",
            percent=True,
        )
    return out
