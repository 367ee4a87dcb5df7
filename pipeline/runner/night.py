"""Planning a run over what earlier runs did: plain Python, no Ray.

Reads the committed completion records (merging them into one file first when there
are many: a run that died before its end merged its own, runner/__init__.py), lists the input once, finds the changed sources, settles what is done under
the retry policy (and `incremental.reprocess_changed`), skips shards whose unit
records say every item is settled, and cuts the rest into work units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pipeline.io.completion import (
    CHECKPOINT_DIR,
    Completion,
    RetryPolicy,
    committed_records,
    compact,
    read_records,
    settle,
    source_state,
)
from pipeline.io.listing import cut_input, input_format, list_input
from pipeline.io.own_ids import recorded_ids
from pipeline.io.sources import (
    changed_sources,
    listed_sources,
    read_unit_records,
    settled_shards,
)
from pipeline.io.storage import storage_errors
from pipeline.io.units import InputPlan, own_id_column
from pipeline.spec import JobSpec

# Completion files are merged into one when a run finds more (io/completion.py `compact`).
COMPACT_AFTER_FILES = 256


def plan_night(
    spec: JobSpec,
    tasks: Sequence[str],
    retry: RetryPolicy,
    out_fs,
    out_root: str,
    run_id: str,
    compact_after: int = COMPACT_AFTER_FILES,
) -> tuple[InputPlan, Completion]:
    """The work units of this run and what earlier runs settled (as this run sees it)."""
    with storage_errors(spec.output.uri, "output", spec.output.storage):
        files = committed_records(out_fs, out_root, CHECKPOINT_DIR)
        if len(files) > compact_after:  # merged first: then read as one file, not twice
            compact(out_fs, out_root, CHECKPOINT_DIR, files, run_id)
        records = read_records(out_fs, out_root, CHECKPOINT_DIR)
        unit_records = read_unit_records(out_fs, out_root)
    with storage_errors(spec.input.uri, "input", spec.input.storage):
        listing = list_input(spec.input)
    state = source_state(records)
    changed = changed_sources(listed_sources(listing), state, unit_records) if state else ()
    del state
    _release()
    again = frozenset(changed) if spec.incremental.reprocess_changed else frozenset()
    done = settle(records, tasks, spec.input_hash(), retry, again)
    _release()
    fmt = input_format(listing, spec.input)
    if fmt != "files":
        shards = settled_shards(listing, unit_records, records, done, tasks)
        listing = replace(listing, settled=shards)
    if fmt == "parquet" and own_id_column(spec.input):
        listing = replace(listing, recorded_ids=recorded_ids(records, listing))
    with storage_errors(spec.input.uri, "input", spec.input.storage):
        inputs = cut_input(
            listing, spec.input, spec.runtime.read_batch_items, done.done_all, changed
        )
    return inputs, done


def _release() -> None:
    """Hand Arrow's freed memory back (mimalloc keeps it): planning's peak at 1M items."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
