"""Two transcription systems on the same items: WER of each, the paired bootstrap interval of
the difference, sclite's matched-pairs test (`pipeline.reports.stats`), the items where they
differ most. Paired on `item_id` (stable across runs and outputs over the same sources),
over the items both scored against a reference.

The two sides are SQL relations with the `latest` columns: two tasks of one output, or a
task of another output registered on the connection as an Arrow table (its per-item
counts only, never its audio).
"""

from __future__ import annotations

from pipeline.reports.asr import audio_href
from pipeline.reports.stats import matched_pairs, paired_ratio_diff_ci
from pipeline.spec import ReportSpec


def side(view: str, task: str, run: str | None = None) -> tuple[str, list]:
    """A relation of one system's rows: (SQL, parameters)."""
    sql = f"SELECT * FROM {view} WHERE task = ?" + (" AND run_id = ?" if run else "")
    return sql, [task, run] if run else [task]


def compare(
    con, name_a: str, a: tuple[str, list], name_b: str, b: tuple[str, list], cfg: ReportSpec
) -> dict:
    """The comparison section for systems `a` and `b` (see `side`)."""
    pairs = f"""WITH a AS ({a[0]}), b AS ({b[0]}), p AS (
        SELECT a.item_id, a.source_uri, a.member, a.ref_words, a.reference,
               a.substitutions + a.deletions + a.insertions AS ea,
               b.substitutions + b.deletions + b.insertions AS eb,
               a.text AS text_a, b.text AS text_b
        FROM a JOIN b USING (item_id)
        WHERE a.ref_words IS NOT NULL AND b.ref_words IS NOT NULL)"""
    params = [*a[1], *b[1]]
    n, words, ea, eb, sz, sz2 = con.execute(
        f"{pairs} SELECT count(*), sum(ref_words), sum(ea), sum(eb), sum(ea - eb), "
        "sum((ea - eb) * (ea - eb)) FROM p",
        params,
    ).fetchall()[0]
    out = {"a": name_a, "b": name_b, "items": n, "ref_words": int(words or 0)}
    if not words:
        out["note"] = "No items scored against a reference by both systems: nothing to compare."
        return out
    triples = con.execute(
        f"{pairs} SELECT ea, eb, ref_words, count(*) FROM p GROUP BY ALL ORDER BY ALL", params
    ).fetchall()
    e_a, e_b, w, c = zip(*triples, strict=True)
    diff = paired_ratio_diff_ci(e_a, e_b, w, c, resamples=cfg.bootstrap_resamples, seed=cfg.seed)
    mp = matched_pairs(n, float(sz), float(sz2))
    worst = con.execute(
        f"""{pairs} SELECT item_id, source_uri, member, ref_words, ea, eb, reference, text_a, text_b
            FROM p ORDER BY abs(ea - eb) / greatest(ref_words, 1) DESC, abs(ea - eb) DESC, item_id
            LIMIT 10""",
        params,
    ).fetchall()
    out |= {
        "wer_a": ea / words,
        "wer_b": eb / words,
        "diff": diff.as_dict() if diff else None,
        "matched_pairs": mp.as_dict() if mp else None,
        "differ_most": [
            {
                "item_id": r[0],
                "source_uri": r[1],
                "member": r[2],
                "audio_href": audio_href(r[1], r[2]),
                "ref_words": r[3],
                "edits_a": r[4],
                "edits_b": r[5],
                "reference": r[6],
                "text_a": r[7],
                "text_b": r[8],
            }
            for r in worst
        ],
    }
    return out
