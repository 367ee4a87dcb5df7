"""report.html: the report dict (what report.json holds) rendered by Jinja2, plots inline.

The page is built from the report dict alone, so `audiobatch report` can rebuild it and a
test can render any dict. Autoescaping is on for the whole template and its parts:
reference texts, transcripts, labels and error messages are data, never markup.
`templates/report.html.j2` holds what every page has (drift, errors, runs); each result
table's nav links and sections come from its part (`templates/tables/`), named by its entry
in `pipeline.reports.results` and taken in the entries' order; the macros they share are
`templates/_macros.html.j2`. The plots are drawn from the aggregated numbers the dict
holds: each result table's by its entry in `pipeline.reports.results`
(`pipeline.reports.table_plots`), comparisons and runs here.
"""

from __future__ import annotations

from markupsafe import Markup

from pipeline.reports import plots as draw
from pipeline.reports.results import RESULT_REPORTS


def render_html(report: dict) -> str:
    """The whole self-contained HTML page for `report`."""
    return _environment().get_template("report.html.j2").render(_context(report))


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.reports", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _context(report: dict) -> dict:
    """What the template and the result tables' parts see."""
    shard_rows = {
        t: [{"value": k, **v} for k, v in s.get("by_shard", {}).items()]
        for t, s in report.get("tasks", {}).items()
    }
    return {
        "report": report,
        "plots": _plots(report),
        "shard_rows": shard_rows,
        "results": RESULT_REPORTS,
    }


def _plots(report: dict) -> dict[str, Markup]:
    out: dict[str, str] = {}
    for entry in RESULT_REPORTS:
        for t, s in report.get(entry.key, {}).items():
            out |= entry.plots(t, s)
    for k, c in enumerate(report.get("comparisons", [])):
        if c.get("wer_a") is not None:
            out[f"compare:{k}"] = draw.bars(
                [c["a"], c["b"]],
                {"WER": [c["wer_a"], c["wer_b"]]},
                "WER on the same items",
                "WER",
                percent=True,
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
