"""Small real outputs for the query tests, written through the pipeline's own sink functions
(`split_batch`, `with_partition`, `conform`, `write_parquet`), laid out as a job writes them."""

from __future__ import annotations

import json
import posixpath
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.columns import ITEM_SCHEMA
from pipeline.io.tables import TaskInfo, partition_dir, split_batch, with_partition, write_parquet
from pipeline.schemas import conform

SCORES = ("ref_words", "substitutions", "deletions", "insertions", "ref_chars", "char_edits")


def item(
    item_id: str,
    shard: str = "s1",
    error: str | None = None,
    *,
    source: str | None = None,
    member: str = "",
    **tasks,
) -> dict:
    """One input item: a read/decode `error` code, or per task either an error code (a string)
    or that task's columns: a dict (`text`, the score counts, ...) for an ASR task, a list of
    (label, score) for a classification task."""
    return {
        "item_id": item_id,
        "shard": shard,
        "error": error,
        "source": source or f"/c/{item_id}.wav",
        "member": member,
        "tasks": tasks,
    }


def write_run(
    fs,
    root: str,
    run_id: str,
    started: datetime | None,
    items: list[dict],
    *,
    tasks=("ctc",),
    classify=(),
    job: str = "demo",
    part: int = 0,
) -> None:
    """Write one run's rows (one file per table and partition, like one sink task), and its
    `runs` row unless `started` is None (a run whose driver was killed)."""
    infos = [TaskInfo(t, "ctc", f"model-{t}", revision=f"sha256:{t}") for t in tasks]
    infos += [
        TaskInfo(t, "classify", f"model-{t}", table="classifications", revision=f"sha256:{t}")
        for t in classify
    ]
    _record_tasks(fs, root, infos)
    batch = _batch(items, tasks, classify)
    for (table, value), rows in split_batch(batch, infos, run_id).items():
        folder = partition_dir(root, table, "task" if table != "errors" else "stage", value)
        write_parquet(fs, posixpath.join(folder, f"{run_id}_{part:06d}.parquet"), rows)
    if started is not None:
        write_parquet(
            fs,
            posixpath.join(partition_dir(root, "runs", "job", job), f"{run_id}.parquet"),
            _run_row(run_id, started, len(items), job),
        )


def _record_tasks(fs, root: str, infos: list[TaskInfo]) -> None:
    """Each task's identity record, as the first run writing it leaves it (with the model's
    revision: the files of such a task all hold `model_revision`, io/task_identity.py)."""
    fs.create_dir(posixpath.join(root, "_tasks"), recursive=True)
    for info in infos:
        record = {"kind": info.kind, "model": info.model, "model_revision": info.revision}
        with fs.open_output_stream(posixpath.join(root, "_tasks", f"{info.name}.json")) as out:
            out.write(json.dumps(record).encode())


def local(tmp_path) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), str(tmp_path)


def at(hour: int) -> datetime:
    return datetime(2026, 11, 30, hour, tzinfo=UTC)


def _batch(items: list[dict], tasks, classify) -> pa.Table:
    rows = []
    for it in items:
        row = {
            "item_id": it["item_id"],
            "source_uri": it["source"],
            "member": it["member"],
            "shard": it["shard"],
            "reference": "a b",
            "input_bytes": 10,
            "duration_s": 2.0,
        }
        if it["error"]:
            row |= {"error_stage": "decode", "error_code": it["error"], "error_message": "bad"}
        for task in tasks:
            value = it["tasks"].get(task, {})
            if isinstance(value, str):
                row |= {
                    f"{task}__error_stage": task,
                    f"{task}__error_code": value,
                    f"{task}__error_message": "it raised",
                }
                continue
            row |= {f"{task}__text": value.get("text", "a b"), f"{task}__normalizer": "basic"}
            counts = {k: value.get(k, 0) for k in SCORES}
            edits = counts["substitutions"] + counts["deletions"] + counts["insertions"]
            counts["wer"] = edits / counts["ref_words"] if counts["ref_words"] else None
            counts["cer"] = (
                counts["char_edits"] / counts["ref_chars"] if counts["ref_chars"] else None
            )
            row |= {f"{task}__{k}": v for k, v in counts.items()}
        for task in classify:  # labels: a list of (label, score), best first
            labels = it["tasks"].get(task, [])
            row[f"{task}__labels"] = [{"label": lb, "score": sc} for lb, sc in labels]
        rows.append(row)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    base = pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows])
    for f in ITEM_SCHEMA:  # the item columns the read step always emits
        if f.name not in base.column_names:
            base = base.append_column(f.name, pa.nulls(base.num_rows, f.type))
    return base.drop_columns(["audio_bytes"])


def _run_row(run_id: str, started: datetime, items: int, job: str) -> pa.Table:
    row = {
        "run_id": run_id,
        "spec_hash": "h",
        "spec_json": "{}",
        "versions": json.dumps({}),
        "started_at": started,
        "ended_at": started,
        "status": "succeeded",
        "items": items,
        "items_ok": items,
        "items_failed": 0,
        "audio_s": 2.0 * items,
        "wall_s": 1.0,
        "stages": [],
        "message": None,
    }
    return conform(with_partition(pa.Table.from_pylist([row]), "runs", job), "runs")
