"""The plots of each result table's sections in report.html, drawn from the aggregated
numbers a section holds (`pipeline.reports.plots`); `reports/results.py` names one function
of these per table. Keys are `<plot>:<task>`, as the template looks them up.
"""

from __future__ import annotations

from pipeline.reports import plots as draw


def transcript_plots(t: str, s: dict) -> dict[str, str]:
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


def classification_plots(t: str, s: dict) -> dict[str, str]:
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


def synthesis_plots(t: str, s: dict) -> dict[str, str]:
    out = {}
    h = s.get("chars_per_s_hist")
    if h and sum(h["counts"]):
        out[f"chars_per_s:{t}"] = draw.histogram(
            h["edges"], h["counts"], "Speaking rate", "characters per second"
        )
    return out
