"""The label distribution of a classifications table, for the report. Pure Arrow.

`label_distribution(table)` summarises each task (the `task` partition column; one
unnamed task when the table has none):
- clip tasks (`labels`): per label, the items it was kept for (in the top-k, above the
  threshold), the items where it ranked first, and its mean score over the items it was
  kept for; most frequent first;
- frame tasks (`segments`): per label, the number of segments, their total seconds, the
  share of the task's audio (`duration_s`) they cover and their mean score (weighted by
  segment length); longest total first.
Rows whose list is null (a failed item never reaches this table; a clip task writes no
segments) count for nothing; an empty list is an item with no label above threshold.
"""

from __future__ import annotations

import pyarrow as pa


def label_distribution(table: pa.Table, top: int = 20) -> dict[str, dict]:
    """Task -> {"items", "audio_s", "labels": [...], "segments": [...]} (see the module doc).

    Each list holds at most `top` labels.
    """
    import pyarrow.compute as pc

    if "task" not in table.column_names:
        return {"": _task_summary(table, top)}
    out = {}
    for task in sorted(pc.unique(table.column("task")).to_pylist(), key=str):
        out[task] = _task_summary(table.filter(pc.equal(table.column("task"), task)), top)
    return out


def _task_summary(rows: pa.Table, top: int) -> dict:
    import pyarrow.compute as pc

    audio_s = float(pc.sum(rows.column("duration_s")).as_py() or 0.0)
    summary: dict = {"items": rows.num_rows, "audio_s": audio_s}
    if "labels" in rows.column_names and rows.column("labels").null_count < rows.num_rows:
        summary["labels"] = _clip_labels(rows.column("labels"), top)
    if "segments" in rows.column_names and rows.column("segments").null_count < rows.num_rows:
        summary["segments"] = _segment_labels(rows.column("segments"), audio_s, top)
    return summary


def _clip_labels(labels: pa.ChunkedArray, top: int) -> list[dict]:
    import pyarrow.compute as pc

    lists = labels.combine_chunks()
    flat = pc.list_flatten(lists)
    if len(flat) == 0:
        return []
    firsts = pc.list_element(lists.filter(pc.greater(pc.list_value_length(lists), 0)), 0)
    first_counts = {
        r["values"]: r["counts"]
        for r in pc.value_counts(pc.struct_field(firsts, "label")).to_pylist()
    }
    grouped = (
        pa.table({"label": pc.struct_field(flat, "label"), "score": pc.struct_field(flat, "score")})
        .group_by("label")
        .aggregate([("score", "count"), ("score", "mean")])
        .to_pylist()
    )
    rows = [
        {
            "label": g["label"],
            "items": g["score_count"],
            "first": first_counts.get(g["label"], 0),
            "mean_score": g["score_mean"],
        }
        for g in grouped
    ]
    rows.sort(key=lambda r: (-r["items"], -r["mean_score"], r["label"]))
    return rows[:top]


def _segment_labels(segments: pa.ChunkedArray, audio_s: float, top: int) -> list[dict]:
    import pyarrow.compute as pc

    flat = pc.list_flatten(segments.combine_chunks())
    if len(flat) == 0:
        return []
    seconds = pc.subtract(pc.struct_field(flat, "end"), pc.struct_field(flat, "start"))
    weighted = pc.multiply(seconds, pc.struct_field(flat, "score"))
    grouped = (
        pa.table({"label": pc.struct_field(flat, "label"), "seconds": seconds, "w": weighted})
        .group_by("label")
        .aggregate([("seconds", "count"), ("seconds", "sum"), ("w", "sum")])
        .to_pylist()
    )
    rows = [
        {
            "label": g["label"],
            "segments": g["seconds_count"],
            "seconds": g["seconds_sum"],
            "share_of_audio": g["seconds_sum"] / audio_s if audio_s else None,
            "mean_score": g["w_sum"] / g["seconds_sum"] if g["seconds_sum"] else None,
        }
        for g in grouped
    ]
    rows.sort(key=lambda r: (-r["seconds"], r["label"]))
    return rows[:top]
