"""What changed since the previous run: the section a nightly report opens with.

The run reported on (the newest in `runs`, or `--run`) against the one before it:
- items written and the error rate (this run's `errors` rows over the items it wrote);
- errors still open now (`errors_open`);
- per transcription task, the items new in this run (no row of the task from an earlier
  run), their corpus WER against the WER of every other item in `latest`, and the
  bootstrap interval of the difference; `beyond_noise` says whether it excludes 0;
- per classification task, the total variation distance between the top-1 label
  distribution of this run's items and of the earlier items (0: same, 1: disjoint).
"""

from __future__ import annotations

from pipeline.reports.asr import LATEST
from pipeline.reports.stats import unpaired_ratio_diff_ci
from pipeline.spec import ReportSpec

_EDITS = "(substitutions + deletions + insertions)"


def drift(con, cfg: ReportSpec, run: str | None = None) -> dict | None:
    """The drift section, or None when the output holds fewer than two runs."""
    runs = con.execute(
        "SELECT run_id, min(started_at), sum(items) FROM runs GROUP BY run_id ORDER BY 2, 1"
    ).fetchall()
    ids = [r[0] for r in runs]
    at = ids.index(run) if run in ids else len(ids) - 1
    if at < 1:
        return None
    (rid, start, items), (pid, pstart, pitems) = runs[at], runs[at - 1]
    errors = dict(
        con.execute(
            "SELECT run_id, count(*) FROM errors WHERE run_id IN (?, ?) GROUP BY run_id",
            [rid, pid],
        ).fetchall()
    )
    tasks = [r[0] for r in con.execute(f"SELECT DISTINCT task FROM {LATEST} ORDER BY 1").fetchall()]
    label_tasks = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT task FROM latest_classifications WHERE labels IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]
    return {
        "run": rid,
        "started_at": str(start),
        "previous_run": pid,
        "previous_started_at": str(pstart),
        "items": items,
        "previous_items": pitems,
        "error_rate": errors.get(rid, 0) / items if items else None,
        "previous_error_rate": errors.get(pid, 0) / pitems if pitems else None,
        "open_errors": con.execute("SELECT count(*) FROM errors_open").fetchall()[0][0],
        "tasks": {t: _new_items(con, t, rid, start, cfg) for t in tasks},
        "labels": {t: _labels(con, t, rid) for t in label_tasks},
    }


def _new_items(con, task: str, rid: str, start, cfg: ReportSpec) -> dict:
    new = f"""new AS (
        SELECT l.* FROM {LATEST} l WHERE l.task = ? AND l.run_id = ? AND NOT EXISTS (
            SELECT 1 FROM transcripts o JOIN run_times rt USING (run_id)
            WHERE o.task = l.task AND o.item_id = l.item_id AND rt.started_at < ?))"""
    params = [task, rid, start]
    n_new = con.execute(f"WITH {new} SELECT count(*) FROM new", params).fetchall()[0][0]
    sides = {}
    for name, rel in (
        ("new", "SELECT * FROM new"),
        (
            "rest",
            f"SELECT * FROM {LATEST} WHERE task = ? AND item_id NOT IN (SELECT item_id FROM new)",
        ),
    ):
        sides[name] = con.execute(
            f"WITH {new} SELECT {_EDITS}, ref_words, count(*) FROM ({rel}) "
            "WHERE ref_words IS NOT NULL GROUP BY ALL ORDER BY ALL",
            params + ([task] if name == "rest" else []),
        ).fetchall()
    out = {"new_items": n_new, "wer_new": None, "wer_rest": None}
    a, b = (_columns(sides[k]) for k in ("new", "rest"))
    if a is None or b is None:
        out["note"] = "No WER comparison: " + (
            "no new items have references." if a is None else "no earlier items have references."
        )
        return out
    diff = unpaired_ratio_diff_ci(a, b, resamples=cfg.bootstrap_resamples, seed=cfg.seed)
    if diff is None:
        out["note"] = "No WER comparison: no reference words on one side."
        return out
    out |= {
        "wer_new": _rate(a),
        "wer_rest": _rate(b),
        "diff": diff.as_dict(),
        "beyond_noise": diff.excludes(0.0),
    }
    return out


def _columns(rows: list) -> tuple | None:
    if not rows or not sum(r[1] * r[2] for r in rows):
        return None
    e, n, c = zip(*rows, strict=True)
    return e, n, c


def _rate(side: tuple) -> float:
    e, n, c = side
    return sum(x * k for x, k in zip(e, c, strict=True)) / sum(
        x * k for x, k in zip(n, c, strict=True)
    )


def _labels(con, task: str, rid: str) -> dict:
    rows = con.execute(
        """SELECT run_id = ? AS new, labels[1].label AS label, count(*)
           FROM latest_classifications WHERE task = ? AND len(labels) > 0 GROUP BY ALL""",
        [rid, task],
    ).fetchall()
    new = {lab: c for is_new, lab, c in rows if is_new}
    old = {lab: c for is_new, lab, c in rows if not is_new}
    n_new, n_old = sum(new.values()), sum(old.values())
    distance = None
    if n_new and n_old:
        labels = set(new) | set(old)
        distance = 0.5 * sum(abs(new.get(x, 0) / n_new - old.get(x, 0) / n_old) for x in labels)
    return {"new_items": n_new, "old_items": n_old, "distance": distance}
