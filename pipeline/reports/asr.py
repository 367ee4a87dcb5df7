"""The transcription sections of the report, aggregated in DuckDB over the `latest` view.

For each task: corpus WER/CER with bootstrap intervals; WER per shard, per metadata column
(`report.group_by`) and per duration bucket, each with its interval; sclite's tallies
(confusion pairs, deletions, insertions) over a seeded sample of at most
`report.alignment_items` scored items (all of them when there are fewer); the worst items
with their alignment; histograms of duration and speaking rate; WER per confidence decile;
languages and hallucination flags. Every query groups in DuckDB: Python sees distinct
(edits, words) rows with their counts, bins, and the few items it shows.

A task whose rows hold no reference text has `wer` None and no breakdowns: the report
shows no WER for it rather than 0% or NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.reports.align import Tally, align, as_rows
from pipeline.reports.stats import ratio_ci
from pipeline.spec import ReportSpec

EDITS = "(substitutions + deletions + insertions)"

# The `latest` view read once into a temporary table of the columns the report reads (not the
# segments and word lists): each section then scans memory instead of re-reading every file
# and re-ranking re-processed rows, ~40 times per task.
LATEST = "report_latest"
_SNAPSHOT_COLUMNS = (
    "item_id, task, source_uri, member, shard, duration_s, model, text, language, confidence, "
    "avg_logprob, flags, reference, normalizer, ref_words, substitutions, deletions, insertions, "
    "ref_chars, char_edits, metadata, run_id"
)


def snapshot(con) -> None:
    """Create the `report_latest` temporary table from the `latest` view."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {LATEST} AS SELECT {_SNAPSHOT_COLUMNS} FROM latest")


DURATION_EDGES = (0, 2, 5, 10, 20, 30, 60)
HIST_BINS = 20


@dataclass(frozen=True)
class Scope:
    """Which rows of a view a section reads: one task, optionally one run's rows only."""

    task: str
    run: str | None = None

    def where(self, alias: str = "") -> tuple[str, list]:
        a = f"{alias}." if alias else ""
        sql, params = f"{a}task = ?", [self.task]
        if self.run:
            sql, params = sql + f" AND {a}run_id = ?", [*params, self.run]
        return sql, params


def asr_tasks(con, run: str | None) -> list[str]:
    sql = f"SELECT DISTINCT task FROM {LATEST}" + (" WHERE run_id = ?" if run else "")
    return sorted(r[0] for r in con.execute(sql, [run] if run else []).fetchall())


def task_section(con, scope: Scope, cfg: ReportSpec) -> dict:
    """Everything the report shows for one transcription task (JSON-able)."""
    where, params = scope.where()
    row = con.execute(
        f"""SELECT count(*), sum(duration_s), list(DISTINCT model ORDER BY model)
                FILTER (WHERE model IS NOT NULL),
            count(ref_words), list(DISTINCT normalizer ORDER BY normalizer)
                FILTER (WHERE ref_words IS NOT NULL),
            sum(ref_words), sum({EDITS}), sum(substitutions), sum(deletions), sum(insertions),
            sum(ref_chars), sum(char_edits)
        FROM {LATEST} WHERE {where}""",
        params,
    ).fetchall()[0]
    items, audio_s, models, scored, norms, ref_words, edits, s, d, i, ref_chars, ch = row
    out = {
        "model": models or [],
        "items": items,
        "audio_hours": (audio_s or 0.0) / 3600,
        "scored_items": scored,
        "normalizer": norms or [],
        "ref_words": int(ref_words or 0),
        "word_edits": int(edits or 0),
        "wer": edits / ref_words if ref_words else None,
        "cer": ch / ref_chars if ref_chars else None,
        **_languages_and_flags(con, where, params),
        "duration_hist": _histogram(con, "duration_s", where, params),
        "speaking_rate_hist": _histogram(con, _RATE, where, params),
        "by_shard": {},
    }
    if not ref_words:
        return out
    out["counts"] = {"substitutions": int(s), "deletions": int(d), "insertions": int(i)}
    out["wer_ci"] = _ci(con, EDITS, "ref_words", where, params, cfg)
    out["cer_ci"] = _ci(con, "char_edits", "ref_chars", where, params, cfg)
    out["by_shard"] = {g.pop("value"): g for g in _grouped(con, "shard", where, params, cfg)}
    out["by_group"], out["group_notes"] = _metadata_groups(con, where, params, cfg)
    out["by_duration"] = _grouped(
        con, _DURATION_BUCKET, where, params, cfg, order="min(duration_s)"
    )
    out["wer_by_confidence"] = _by_confidence(con, where, params)
    out["confusions"] = _confusions(con, where, params, cfg, scored)
    out["worst"] = _worst(con, where, params, cfg.worst_items)
    return out


# Words per second of speech: reference words when there is a reference, else hypothesis words.
_RATE = (
    "coalesce(ref_words, len(string_split(trim(coalesce(text, '')), ' '))) / nullif(duration_s, 0)"
)
_DURATION_BUCKET = (
    "CASE "
    + " ".join(
        f"WHEN duration_s < {hi} THEN '{lo}–{hi}'"
        for lo, hi in zip(DURATION_EDGES[:-1], DURATION_EDGES[1:], strict=True)
    )
    + f" ELSE '≥{DURATION_EDGES[-1]}' END"
)


def _ci(con, num: str, den: str, where: str, params: list, cfg: ReportSpec) -> dict | None:
    rows = con.execute(
        f"SELECT {num}, {den}, count(*) FROM {LATEST} WHERE {where} AND {den} IS NOT NULL "
        "GROUP BY ALL ORDER BY ALL",
        params,
    ).fetchall()
    if not rows:
        return None
    e, n, c = zip(*rows, strict=True)
    ci = ratio_ci(e, n, c, resamples=cfg.bootstrap_resamples, seed=cfg.seed)
    return ci.as_dict() if ci else None


def _grouped(
    con, key: str, where: str, params: list, cfg: ReportSpec, ci: bool = True, order: str = ""
) -> list[dict]:
    """Per value of the SQL expression `key`: counts, WER, CER and a WER interval; at most
    `cfg.max_groups` groups, the largest first (or by `order`)."""
    rows = con.execute(
        f"""SELECT {key} AS g, count(*), count(ref_words),
                string_agg(DISTINCT normalizer, ',' ORDER BY normalizer),
                sum(ref_words), sum({EDITS}), sum(ref_chars), sum(char_edits)
            FROM {LATEST} WHERE {where} GROUP BY g
            ORDER BY {order or "count(*) DESC"}, g LIMIT {int(cfg.max_groups)}""",
        params,
    ).fetchall()
    groups = []
    for g, items, scored, norms, words, edits, chars, ch in rows:
        groups.append(
            {
                "value": g,
                "items": items,
                "scored_items": scored,
                "normalizer": norms.split(",") if norms else [],
                "ref_words": int(words or 0),
                "word_edits": int(edits or 0),
                "wer": edits / words if words else None,
                "cer": ch / chars if chars else None,
            }
        )
    if ci and groups:
        _group_cis(con, key, where, params, cfg, groups)
    return groups


def _group_cis(con, key, where, params, cfg, groups: list[dict]) -> None:
    import numpy as np

    rows = con.execute(
        f"SELECT {key} AS g, {EDITS}, ref_words, count(*) FROM {LATEST} "
        f"WHERE {where} AND ref_words IS NOT NULL GROUP BY ALL ORDER BY ALL",
        params,
    ).fetchall()
    by_group: dict = {}
    for g, e, n, c in rows:
        by_group.setdefault(g, []).append((e, n, c))
    for group in groups:
        part = by_group.get(group["value"])
        group["wer_ci"] = None
        if part:
            e, n, c = np.array(part).T
            ci = ratio_ci(e, n, c, resamples=cfg.bootstrap_resamples, seed=cfg.seed)
            group["wer_ci"] = ci.as_dict() if ci else None


def _metadata_groups(con, where, params, cfg: ReportSpec) -> tuple[dict, list[str]]:
    groups, notes = {}, []
    for name in cfg.group_by:
        key = f"json_extract_string(metadata, '$.\"{name}\"')"
        present = con.execute(
            f"SELECT count({key}) FROM {LATEST} WHERE {where}", params
        ).fetchall()[0][0]
        if present:
            groups[name] = _grouped(con, key, where, params, cfg)
        else:
            notes.append(f"No item has a metadata column '{name}' (report.group_by).")
    return groups, notes


def _histogram(con, expr: str, where: str, params: list) -> dict | None:
    """Equal-width bins from 0 to the 99th percentile of `expr` (the last bin takes the rest)."""
    top = con.execute(
        f"SELECT quantile_cont({expr}, 0.99) FROM {LATEST} WHERE {where} AND {expr} >= 0", params
    ).fetchall()[0][0]
    if top is None:
        return None
    width = float(top) / HIST_BINS or 1.0
    rows = con.execute(
        f"SELECT least(floor(({expr}) / ?)::INT, {HIST_BINS - 1}) AS b, count(*) FROM {LATEST} "
        f"WHERE {where} AND {expr} >= 0 GROUP BY b",
        [width, *params],
    ).fetchall()
    counts = [0] * HIST_BINS
    for b, c in rows:
        counts[b] += c
    return {"edges": [k * width for k in range(HIST_BINS + 1)], "counts": counts}


def _by_confidence(con, where: str, params: list) -> dict | None:
    """Corpus WER per decile of the model's confidence: `confidence` (CTC mean max-probability)
    where written, else Whisper's `avg_logprob`."""
    for column in ("confidence", "avg_logprob"):
        rows = con.execute(
            f"""SELECT b, min(c), max(c), count(*), sum(e), sum(n) FROM (
                    SELECT ntile(10) OVER (ORDER BY {column}) AS b, {column} AS c,
                           {EDITS} AS e, ref_words AS n
                    FROM {LATEST} WHERE {where} AND {column} IS NOT NULL AND ref_words IS NOT NULL)
                GROUP BY b ORDER BY b""",
            params,
        ).fetchall()
        if rows:
            bins = [
                {"low": lo, "high": hi, "items": k, "wer": e / n if n else None}
                for _, lo, hi, k, e, n in rows
            ]
            return {"column": column, "bins": bins}
    return None


def _confusions(con, where, params, cfg: ReportSpec, scored: int) -> dict | None:
    from pipeline.text.normalize import get_normalizer

    if cfg.alignment_items == 0:
        return None
    # A seeded, stable sample: the items with the smallest hash of (id, seed).
    rows = con.execute(
        f"""SELECT reference, text, normalizer FROM {LATEST}
            WHERE {where} AND ref_words IS NOT NULL AND reference IS NOT NULL
            ORDER BY hash(item_id || ?), item_id LIMIT {int(cfg.alignment_items)}""",
        [*params, str(cfg.seed)],
    ).fetchall()
    tally = Tally()
    normalizers: dict = {}
    for ref, hyp, name in rows:
        norm = normalizers.setdefault(name, get_normalizer(name))
        tally.add(align(norm(ref), norm(hyp or "")))
    return tally.top(20)


def _worst(con, where: str, params: list, n: int) -> list[dict]:
    from pipeline.text.normalize import get_normalizer

    if n == 0:
        return []
    rows = con.execute(
        f"""SELECT item_id, source_uri, member, duration_s, reference, text, normalizer,
                ref_words, {EDITS} AS edits
            FROM {LATEST} WHERE {where} AND ref_words > 0
            ORDER BY edits / ref_words DESC, edits DESC, item_id LIMIT {int(n)}""",
        params,
    ).fetchall()
    out = []
    for item, uri, member, dur, ref, hyp, name, words, edits in rows:
        norm = get_normalizer(name)
        out.append(
            {
                "item_id": item,
                "source_uri": uri,
                "member": member,
                "audio_href": audio_href(uri, member),
                "duration_s": dur,
                "ref_words": words,
                "edits": edits,
                "wer": edits / words,
                "alignment": as_rows(align(norm(ref or ""), norm(hyp or ""))),
            }
        )
    return out


def _languages_and_flags(con, where: str, params: list) -> dict:
    out: dict = {}
    langs = con.execute(
        f"SELECT language, count(*) n FROM {LATEST} WHERE {where} AND language IS NOT NULL "
        "GROUP BY language ORDER BY n DESC, language",
        params,
    ).fetchall()
    if langs:
        out["languages"] = dict(langs)
    checked, flagged = con.execute(
        f"SELECT count(flags), count(*) FILTER (WHERE len(flags) > 0) FROM {LATEST} WHERE {where}",
        params,
    ).fetchall()[0]
    if checked:
        by_flag = con.execute(
            f"SELECT f, count(*) FROM (SELECT unnest(flags) f FROM {LATEST} WHERE {where}) "
            "GROUP BY f ORDER BY f",
            params,
        ).fetchall()
        out["flags"] = {
            "checked_items": checked,
            "flagged_items": flagged,
            "by_flag": dict(by_flag),
        }
    return out


def audio_href(uri: str | None, member: str | None) -> str | None:
    """A link a browser can open: local files only (a `file://` URL); a member of a tar or
    Parquet shard, or an object-storage URI without a presigned form, has none."""
    from pathlib import Path
    from urllib.parse import urlparse

    if not uri or member:
        return None
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        return uri
    if parsed.scheme in ("", "file") and Path(parsed.path).is_absolute():
        return Path(parsed.path).as_uri()
    return None
