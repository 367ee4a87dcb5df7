"""The synthesis part of the report: counts, round-trip WER/CER, signal measures, worst items.

Round-trip WER is corpus WER (total edits over total reference words of the input
texts), like transcription WER. The worst items are those with the highest per-item
round-trip WER, then runaways and empties, so a reader sees first what to listen to.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean, median

import pyarrow as pa

from pipeline.kinds.synthesize import SIGNAL_FIELDS

_WORST_FIELDS = ("text_id", "wer", "cer", "runaway", "empty", "text", "transcript", "audio_uri")


def synthesis_summary(table: pa.Table, worst: int = 10) -> dict[str, dict]:
    """Task -> summary of that task's `syntheses` rows (`task` is the partition column)."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for row in table.to_pylist():
        by_task[row.get("task") or ""].append(row)
    return {task: _task(rows, worst) for task, rows in sorted(by_task.items())}


def _task(rows: list[dict], worst: int) -> dict:
    scored = [r for r in rows if r["ref_words"]]
    ref_words = sum(r["ref_words"] for r in scored)
    edits = sum(r["substitutions"] + r["deletions"] + r["insertions"] for r in scored)
    ref_chars = sum(r["ref_chars"] or 0 for r in scored)
    char_edits = sum(r["char_edits"] or 0 for r in scored)
    ranked = sorted(
        rows,
        key=lambda r: (
            -(r["wer"] if r["wer"] is not None else -1),
            not r["runaway"],
            not r["empty"],
        ),
    )
    return {
        "model": sorted({r["model"] for r in rows if r["model"]}),
        "items": len(rows),
        "audio_hours": sum(r["duration_s"] or 0.0 for r in rows) / 3600,
        "runaway": sum(1 for r in rows if r["runaway"]),
        "empty": sum(1 for r in rows if r["empty"]),
        "roundtrip": {
            "task": next((r["roundtrip_task"] for r in rows if r["roundtrip_task"]), None),
            "scored_items": len(scored),
            "normalizer": sorted({r["normalizer"] for r in scored if r["normalizer"]}),
            "ref_words": ref_words,
            "word_edits": edits,
            "wer": edits / ref_words if ref_words else None,
            "cer": char_edits / ref_chars if ref_chars else None,
        },
        "signal": {name: _stats([r[name] for r in rows]) for name in SIGNAL_FIELDS},
        "worst": [{k: r[k] for k in _WORST_FIELDS} for r in ranked[:worst]],
    }


def _stats(values: list) -> dict | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {"mean": mean(present), "median": median(present), "max": max(present)}
