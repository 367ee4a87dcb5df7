"""Classification and synthesis sections, read through `latest_classifications` and
`latest_syntheses` (`pipeline.reports.labels`, `pipeline.reports.syntheses` summarise them),
with the histograms the page plots computed in DuckDB.
"""

from __future__ import annotations

from pipeline.reports.asr import audio_href

_BINS = 20


def classification_sections(con, run: str | None) -> dict:
    from pipeline.reports.labels import label_distribution

    where, params = ("WHERE run_id = ?", [run]) if run else ("", [])
    # Only the columns the summary reads: labels and segments lists, no windows or texts.
    table = con.sql(
        f"SELECT task, duration_s, labels, segments FROM latest_classifications {where}",
        params=params,
    ).to_arrow_table()
    if table.num_rows == 0:
        return {}
    out = label_distribution(table)
    for task, section in out.items():
        rows = con.execute(
            f"""SELECT least(floor(labels[1].score * {_BINS})::INT, {_BINS - 1}) b, count(*)
                FROM latest_classifications WHERE task = ? {"AND run_id = ?" if run else ""}
                AND len(labels) > 0 GROUP BY b""",
            [task, *params],
        ).fetchall()
        if rows:
            counts = [0] * _BINS
            for b, c in rows:
                counts[max(b, 0)] += c
            section["score_hist"] = {
                "edges": [k / _BINS for k in range(_BINS + 1)],
                "counts": counts,
            }
    return out


def synthesis_sections(con, run: str | None) -> dict:
    from pipeline.reports.syntheses import synthesis_summary

    where, params = ("WHERE run_id = ?", [run]) if run else ("", [])
    table = con.sql(f"SELECT * FROM latest_syntheses {where}", params=params).to_arrow_table()
    if table.num_rows == 0:
        return {}
    out = synthesis_summary(table)
    for task, section in out.items():
        for w in section["worst"]:
            w["audio_href"] = audio_href(w["audio_uri"], None)
        top = con.execute(
            "SELECT quantile_cont(chars_per_s, 0.99) FROM latest_syntheses WHERE task = ?", [task]
        ).fetchall()[0][0]
        if top:
            width = top / _BINS
            rows = con.execute(
                f"SELECT least(floor(chars_per_s / ?)::INT, {_BINS - 1}) b, count(*) "
                "FROM latest_syntheses WHERE task = ? AND chars_per_s >= 0 GROUP BY b",
                [width, task],
            ).fetchall()
            counts = [0] * _BINS
            for b, c in rows:
                counts[b] += c
            section["chars_per_s_hist"] = {
                "edges": [k * width for k in range(_BINS + 1)],
                "counts": counts,
            }
    return out
