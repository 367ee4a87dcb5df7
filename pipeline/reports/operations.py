"""Operations: errors by code, stage and task with examples, and the runs with their
per-stage throughput (audio seconds per busy second of one worker, items per busy second).

Errors are counted over the `errors` table (every failed attempt; `run` narrows it to one
run) and `open` over `errors_open` (those no later success superseded).
"""

from __future__ import annotations


def errors_section(con, run: str | None) -> dict:
    where, params = ("WHERE run_id = ?", [run]) if run else ("", [])

    def counts(expr: str) -> dict:
        rows = con.execute(
            f"SELECT {expr} AS k, count(*) FROM errors {where} GROUP BY k ORDER BY k", params
        ).fetchall()
        return dict(rows)

    total = con.execute(f"SELECT count(*) FROM errors {where}", params).fetchall()[0][0]
    examples = con.sql(
        "SELECT stage, task, error_code, source_uri, member, error_message FROM errors "
        f"{where} ORDER BY error_code, stage, item_id LIMIT 10",
        params=params,
    ).to_arrow_table()
    return {
        "total": total,
        "open": con.execute(f"SELECT count(*) FROM errors_open {where}", params).fetchall()[0][0],
        "by_code": counts("error_code"),
        "by_stage": counts("stage"),
        "by_task": counts("coalesce(task, '(all tasks)')"),
        "examples": examples.to_pylist(),
    }


_RUN_COLUMNS = (
    "run_id, status, started_at, wall_s, items, items_ok, items_failed, audio_s, stages, message, "
    "units, skipped_units, changed_sources"
)


def runs_section(con, run: str | None) -> list[dict]:
    where, params = ("WHERE run_id = ?", [run]) if run else ("", [])
    runs = (
        con.sql(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY started_at, run_id", params=params
        )
        .to_arrow_table()
        .to_pylist()
    )
    for r in runs:
        r["realtime_factor"] = r["audio_s"] / r["wall_s"] if r["wall_s"] else None
        for s in r["stages"] or []:
            # Per stage: audio seconds per busy second of one worker (actor or task).
            s["realtime_factor_per_worker"] = s["audio_s"] / s["busy_s"] if s["busy_s"] else None
            s["items_per_busy_s"] = s["items"] / s["busy_s"] if s["busy_s"] else None
    return runs
