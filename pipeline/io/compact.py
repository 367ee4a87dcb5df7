"""`audiobatch compact`: a table's many small files rewritten into a few, readers unharmed.

Nightly runs leave one small file per write and task; a query over 1,000 of them costs
several times the CPU of one over 50 (benchmarks/RESULTS.md). Per table and partition
(`task=`, `stage=`, `job=`), `compact_output`

1. takes the output's lease (pipeline/io/lease.py): no run writes meanwhile, and no
   run starts until it is done (`LeaseHeld`, exit 3, names the holder);
2. deletes the files that the current manifest lists as replaced more than `grace_s`
   ago, and compacted files that no manifest published (a crashed compaction's);
3. writes the small files' rows into files of about `target_bytes` under new names
   (`io.compacted.file_name`), which no reader reads yet;
4. publishes the next manifest `_compaction/<table>/<generation>.json`, created
   exclusively: from then on readers read the new files instead of the old
   (pipeline/io/compacted.py). The old files stay until a later compact, `grace_s` on.

A crash anywhere leaves either the previous manifest (the new files unread, deleted by
the next compact) or the new one: never both sets of rows, never neither. Then the
completion records (`_completion/`) are merged as the planner merges them
(`io.completion.compact`), every column kept by name.
"""

from __future__ import annotations

import posixpath
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.errors import AudiobatchError
from pipeline.io.compacted import (
    Published,
    file_name,
    generations,
    manifest_path,
    published,
    relative,
)
from pipeline.schemas import TABLES

DEFAULT_TARGET_MB = 128
DEFAULT_GRACE_S = 3600.0


@dataclass(frozen=True)
class CompactOptions:
    """What `audiobatch compact` does; one object for the command and the tests."""

    tables: tuple[str, ...] = tuple(TABLES)  # which tables (all by default)
    target_bytes: int = DEFAULT_TARGET_MB * 2**20  # about this much Parquet per merged file
    grace_s: float = DEFAULT_GRACE_S  # replaced files are deleted this long after, at the earliest
    dry_run: bool = False  # say what would be done, write and delete nothing
    lease_ttl_s: float = 300.0


@dataclass(frozen=True)
class TableCompaction:
    """What compaction did (or, dry, would do) to one table."""

    table: str
    files_before: int  # files a reader read before
    merged: int  # of those, rewritten into `written`
    written: int
    deleted: int  # replaced files past their grace period, and unpublished leftovers
    generation: int | None  # the manifest published; None: nothing to publish

    def line(self) -> str:
        if not self.merged and not self.deleted:
            return f"{self.table}: {self.files_before} files, nothing to compact"
        return (
            f"{self.table}: {self.merged} of {self.files_before} files into {self.written}, "
            f"{self.deleted} replaced files deleted"
            + (f" (manifest {self.generation})" if self.generation is not None else "")
        )


def compact_output(
    uri: str, storage, options: CompactOptions, out: Callable[[str], None] = print
) -> list[TableCompaction]:
    """Compact the output at `uri` under its lease (module docstring); one result per table."""
    from pipeline.io.lease import acquire
    from pipeline.io.storage import arrow_filesystem, filesystem, storage_errors

    fs, root = filesystem(uri, storage)
    afs, aroot = arrow_filesystem(uri, storage)
    compaction_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-compact-") + uuid.uuid4().hex[:6]
    with storage_errors(uri, "output", storage):
        if options.dry_run:
            return _compact_all(fs, afs, aroot, options, compaction_id, out)
        with acquire(fs, root, compaction_id, options.lease_ttl_s, where=uri).start_heartbeat():
            return _compact_all(fs, afs, aroot, options, compaction_id, out)


def _compact_all(fs, afs, root, options, compaction_id, out) -> list[TableCompaction]:
    from pipeline.io.completion import CHECKPOINT_DIR, committed_records, compact

    results = []
    for table in options.tables:
        result = compact_table(fs, afs, root, table, options)
        out(result.line())
        results.append(result)
    records = committed_records(afs, root, CHECKPOINT_DIR)
    if len(records) > 1 and not options.dry_run:
        compact(afs, root, CHECKPOINT_DIR, records, compaction_id)
    out(f"_completion: {len(records)} files" + (" merged into 1" if len(records) > 1 else ""))
    return results


def compact_table(fs, afs, root: str, table: str, options: CompactOptions) -> TableCompaction:
    """Steps 2-4 of the module docstring for one table (`fs` fsspec, `afs` pyarrow)."""
    from pipeline.io.tables import parquet_files

    state = published(fs, root, table)  # before the listing, as every reader does
    base = posixpath.join(root, table)
    listed = {relative(base, f): f for f in parquet_files(afs, base)}
    t = time.time()
    expired = {r for r, at in state.replaced.items() if t - at >= options.grace_s}
    leftovers = {r for r in listed if _unpublished(r, state)}
    doomed = sorted((expired & set(listed)) | leftovers)
    visible = {r: f for r, f in listed.items() if state.visible(r)}
    groups = _groups(afs, visible, options.target_bytes)
    merged = [r for g in groups for r in g]
    if options.dry_run:
        return TableCompaction(table, len(visible), len(merged), len(groups), len(doomed), None)
    for r in doomed:
        afs.delete_file(listed[r])
    generation = state.generation + 1
    token = uuid.uuid4().hex[:8]
    written = []
    for n, group in enumerate(groups):
        rel = posixpath.join(posixpath.dirname(group[0]), file_name(generation, token, n))
        _merge(afs, base, table, [visible[r] for r in group], posixpath.join(base, rel))
        written.append(rel)
    if not written and not expired:
        return TableCompaction(table, len(visible), 0, 0, len(doomed), None)
    new_state = Published(
        generation=generation,
        files=(state.files - set(merged)) | set(written),
        replaced={r: at for r, at in state.replaced.items() if r not in expired}
        | dict.fromkeys(merged, t),
        published_at=t,
    )
    _publish(fs, root, table, new_state)
    return TableCompaction(table, len(visible), len(merged), len(written), len(doomed), generation)


def _unpublished(rel: str, state: Published) -> bool:
    """A compacted file that no manifest published: written by a compaction that crashed."""
    from pipeline.io.compacted import is_compacted

    return is_compacted(rel) and rel not in state.files and rel not in state.replaced


def _groups(afs, visible: dict[str, str], target: int) -> list[list[str]]:
    """Per partition folder, the small files cut into runs of about `target` bytes; a run
    of one file is left alone (rewriting it gains nothing)."""
    import pyarrow.fs as pafs

    by_dir: dict[str, list[tuple[str, int]]] = {}
    infos = afs.get_file_info([visible[r] for r in sorted(visible)])
    for r, info in zip(sorted(visible), infos, strict=True):
        if info.type == pafs.FileType.File and info.size < target:
            by_dir.setdefault(posixpath.dirname(r), []).append((r, info.size))
    groups = []
    for files in by_dir.values():
        runs, size = [[]], 0
        for r, n in files:
            if runs[-1] and size + n > target:
                runs.append([])
                size = 0
            runs[-1].append(r)
            size += n
        if len(runs) > 1 and len(runs[-1]) == 1:
            runs[-2].extend(runs.pop())  # a lone tail joins the partition's last run
        groups.extend(g for g in runs if len(g) > 1)
    return groups


def _merge(afs, base: str, table: str, files: Sequence[str], path: str) -> None:
    """Write the rows of `files` (in order) to `path`, every column kept by name."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from pipeline.io.tables import write_parquet

    schema, key = TABLES[table]
    physical = [pq.read_schema(f, filesystem=afs) for f in files]
    unified = pa.unify_schemas([schema, *physical], promote_options="permissive")
    if key not in unified.names:
        unified = unified.append(pa.field(key, pa.string()))
    part = ds.partitioning(pa.schema([(key, pa.string())]), flavor="hive")
    nullable = pa.schema([f.with_nullable(True) for f in unified])
    rows = ds.dataset(
        list(files),
        schema=nullable,
        filesystem=afs,
        format="parquet",
        partitioning=part,
        partition_base_dir=base,
    ).to_table()
    # The declared columns in the declared order and types (non-null ones checked), then
    # any other column a newer writer added.
    names = [*schema.names, *(n for n in unified.names if n not in schema.names)]
    target = pa.schema([schema.field(n) if n in schema.names else unified.field(n) for n in names])
    write_parquet(afs, path, rows.select(names).cast(target))


def _publish(fs, root: str, table: str, state: Published) -> None:
    """Create the manifest of `state.generation` exclusively; drop all but the previous."""
    from pipeline.io.lease import create_exclusive, remove

    path = manifest_path(root, table, state.generation)
    try:
        create_exclusive(fs, path, state.to_bytes(table))
    except FileExistsError:
        raise AudiobatchError(
            f"{path} was created by another compaction while this one held the lease; its "
            "new files are left unpublished (the next compact deletes them): re-run compact"
        ) from None
    for old in generations(fs, root, table)[:-2]:
        remove(fs, manifest_path(root, table, old))
