"""Small real outputs for the report tests: rows conformed to the table schemas and written
with the pipeline's own writer, partitioned as a job writes them, one `runs` row per run."""

from __future__ import annotations

import json
import posixpath
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.io.tables import partition_dir, with_partition, write_parquet
from pipeline.metrics.wer import char_edits, word_edits
from pipeline.schemas import CLASSIFICATIONS, ERRORS, RUNS, SYNTHESES, TRANSCRIPTS, conform
from pipeline.text.normalize import get_normalizer

FS = pafs.LocalFileSystem()


def transcript(item: str, ref: str | None, hyp: str, **extra) -> dict:
    """A transcripts row scored like the score stage scores it (basic normaliser)."""
    row = {f.name: None for f in TRANSCRIPTS}
    row |= dict(
        item_id=item,
        source_uri=f"/corpus/{item}.wav",
        member="",
        shard="s1",
        duration_s=2.0,
        model="m",
        text=hyp,
        reference=ref,
        run_id="r1",
    )
    if ref is not None:
        norm = get_normalizer("basic")
        w, c = word_edits(norm(ref), norm(hyp)), char_edits(norm(ref), norm(hyp))
        row |= dict(
            normalizer="basic",
            ref_words=w.ref_words,
            substitutions=w.substitutions,
            deletions=w.deletions,
            insertions=w.insertions,
            wer=w.wer,
            ref_chars=c.ref_words,
            char_edits=c.errors,
            cer=c.wer,
        )
    row |= extra
    if isinstance(row.get("metadata"), dict):
        row["metadata"] = json.dumps(row["metadata"])
    return row


def write(root: str, table: str, value: str, rows: list[dict], name: str = "p") -> None:
    schemas = {
        "transcripts": TRANSCRIPTS,
        "classifications": CLASSIFICATIONS,
        "syntheses": SYNTHESES,
        "errors": ERRORS,
    }
    schema = schemas[table]
    rows = [{f.name: r.get(f.name) for f in schema} for r in rows]
    key = "stage" if table == "errors" else "task"
    t = with_partition(pa.Table.from_pylist(rows, schema=schema), table, value)
    write_parquet(
        FS,
        posixpath.join(partition_dir(root, table, key, value), f"{name}.parquet"),
        conform(t, table),
    )
    if table != "errors":  # the task's identity record, as a run leaves it (with a revision)
        FS.create_dir(posixpath.join(root, "_tasks"), recursive=True)
        with FS.open_output_stream(posixpath.join(root, "_tasks", f"{value}.json")) as out:
            out.write(json.dumps({"model_revision": f"sha256:{value}"}).encode())


def run_row(root: str, run_id: str, hour: int, items: int, spec: dict | None = None) -> None:
    row = {
        "run_id": run_id,
        "spec_hash": "h",
        "spec_json": json.dumps(spec or {}),
        "versions": "{}",
        "started_at": datetime(2026, 11, 30, hour, tzinfo=UTC),
        "ended_at": datetime(2026, 11, 30, hour, 1, tzinfo=UTC),
        "status": "succeeded",
        "items": items,
        "items_ok": items,
        "items_failed": 0,
        "audio_s": 2.0 * items,
        "wall_s": 10.0,
        "stages": [{"stage": "ctc", "items": items, "audio_s": 2.0 * items, "busy_s": 4.0}],
        "message": None,
    }
    # The nightly history columns (nullable: unknown for this fixture's runs).
    history = [f for f in RUNS if f.nullable and f.name not in row and f.name != "job"]
    row |= {f.name: None for f in history}
    t = with_partition(pa.Table.from_pylist([row]), "runs", "demo")
    folder = partition_dir(root, "runs", "job", "demo")
    write_parquet(FS, posixpath.join(folder, f"{run_id}.parquet"), conform(t, "runs"))
