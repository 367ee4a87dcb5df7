"""The one definition of every view over an output's tables (used by `query`, the report, tests).

`register(con, root, present)` creates, on a DuckDB connection:

Table views, one per table, with its partition column as a real column:
  `transcripts`, `classifications`, `syntheses` (`task`), `errors` (`stage`), `runs` (`job`).
  A table with no files yet is an empty view with the table's schema, not an error.

Convenience views:
  `latest`          transcripts, the newest row per (item_id, task): re-processing an item
                    (a new model revision, a forced re-run) appends rows, it never rewrites.
  `latest_classifications`, `latest_syntheses`   the same rule for those tables (one
                    `latest_<table>` for each of `schemas.RESULT_TABLES`).
  `corpus_wer`      per task over `latest`: items, scored items, audio seconds, reference
                    words, substitutions / deletions / insertions, edits, WER, reference
                    characters, character edits, CER. WER is total edits over total reference
                    words (CER likewise), never a mean of per-item rates; `normalizer` lists
                    the normalisers that produced the counts.
  `corpus_wer_by_shard`   the same per task and shard.
  `errors_open`     the errors not superseded by a later success (the nightly retry policy
                    reads it). An error naming a task is open unless the same (item_id, task)
                    has a row in a result table written by a later run. A read or decode error
                    (`task` null: it cost every task) is open unless the item was read later:
                    it has a row in any result table, or an error naming a task, from a later
                    run. An item that failed in three runs has three open rows until it
                    succeeds (count them for a retry budget); `error_at` is the failing run's
                    start, so `ORDER BY error_at DESC` puts the newest attempt first.
                    An error that failed a whole shard (member "", e.g. `config_error` for
                    a misnamed audio column) is also closed once other items of that shard
                    (the same `source_uri`) have rows from a later run: for its task, or
                    in any result table when it names none (issue 11: fixing the spec
                    re-runs the shard; the stale shard error must not count as an input).
  `run_times`       run_id -> started_at, from `runs`.

"Later" and "newest" order rows by their run's start time (`runs.started_at`); a run with
no `runs` row (its driver was killed) is placed by the UTC time its run id starts with
(`20261125T044151Z-...`), and equal times by run id.

The table views glob their folder at each query, so files written after `register` are
seen (on object storage within `connection.LISTING_TTL_S`, 30 s); a table that had no files
at `register` stays empty until the next `connect`. They read the files that the table's
compaction manifest at `register` keeps (pipeline/io/compacted.py): a compaction published
later is seen at the next `connect`; until then the connection reads the files it replaced,
which stay for the compaction's grace period.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pipeline.io.compacted import PREFIX, Published
from pipeline.query.confine import sql_literal
from pipeline.schemas import RESULT_TABLES, TABLES

FILE_COLUMN = "__audiobatch_file"  # each row's file, for the compaction filter; not shown

# A run's place in time: its start from `runs`, else the UTC time its id begins with.
_RUN_AT = (
    "coalesce(r.started_at, try_strptime(split_part({t}.run_id, '-', 1) || '+0000', "
    "'%Y%m%dT%H%M%SZ%z'), TIMESTAMPTZ '1970-01-01 00:00:00+00')"
)


def _run_order(alias: str) -> str:
    """A comparable (time, run id) of the run that wrote row `alias` (joined with `r`)."""
    return f"row({_RUN_AT.format(t=alias)}, {alias}.run_id)"


def table_source(
    root: str, table: str, state: Published | None = None, *, older_files: bool = False
) -> str:
    """The SELECT of every row of `table` under the output `root` that a reader reads: the
    files `state` (the table's compaction manifest, read before any listing) keeps.

    `older_files`: some files may predate a column of the table's schema (`model_revision`
    in a task written before revisions were recorded), read as nulls by `union_by_name`."""
    files = sql_literal(f"{root.rstrip('/')}/{table}/**/*.parquet")
    # Partition values are strings (`task=2024` is not a number). Every file of a table has
    # the table's schema (`schemas.conform`), or that schema less the partition column (files
    # written before it was added), which the folder name supplies: so no `union_by_name`,
    # which costs ~40% more CPU at 1M rows, unless files written before a newer column are
    # there (`older_files`).
    union = ", union_by_name=true" if older_files else ""
    source = (
        f"read_parquet({files}, hive_partitioning=true, hive_types_autocast=false, "
        f"filename='{FILE_COLUMN}'{union})"
    )
    return (
        f"SELECT * EXCLUDE ({FILE_COLUMN}) FROM {source} WHERE {_file_filter(root, table, state)}"
    )


def _file_filter(root: str, table: str, state: Published | None) -> str:
    """`io.compacted.Published.visible` in SQL, over the file name. DuckDB applies a filter
    on the file name to the file list before it opens a file, so a replaced file costs no
    read (and may be deleted meanwhile); a MAP lookup: excluding 400 of 1,000 files cost
    0.18 s CPU, `NOT IN (...)` 0.63 s (docs/FACTS.md, "DuckDB: excluding files")."""
    base = f"{root.rstrip('/')}/{table}/"
    unpublished = f"starts_with(parse_filename({FILE_COLUMN}), {sql_literal(PREFIX)})"
    if state is None or state.generation < 0:
        return f"NOT {unpublished}"
    keep = f"NOT {unpublished}"
    if state.files:
        keep = f"({keep} OR map_contains({_sql_set(base, state.files)}, {FILE_COLUMN}))"
    if state.replaced:
        keep += f" AND NOT map_contains({_sql_set(base, state.replaced)}, {FILE_COLUMN})"
    return keep


def _sql_set(base: str, names: Iterable[str]) -> str:
    return "MAP {" + ", ".join(f"{sql_literal(base + n)}: true" for n in sorted(names)) + "}"


def empty_select(con, table: str) -> str:
    """A SELECT of no rows with `table`'s columns and types (for a table with no files yet)."""
    import pyarrow as pa

    schema = TABLES[table][0]
    types = con.from_arrow(pa.Table.from_pylist([], schema=schema)).types
    cols = ", ".join(f'CAST(NULL AS {t}) AS "{f.name}"' for f, t in zip(schema, types, strict=True))
    return f"SELECT {cols} WHERE false"


def latest_view(table: str) -> str:
    """The view of a result table's newest row per (item_id, task): `latest` for
    transcripts (the first table, named before there were others), else `latest_<table>`."""
    return "latest" if table == "transcripts" else f"latest_{table}"


def _latest(table: str) -> str:
    # Rows whose (item_id, task) was written once pass through; only keys written again are
    # ranked. Candidates are found by a 64-bit hash of the key (grouping integers is ~3x
    # cheaper than grouping strings); a collision only adds a key to the exact ranking.
    # Ranking every row with one window costs 3x the CPU at 1M rows (benchmarks/RESULTS.md).
    return f"""
        WITH again AS MATERIALIZED (
            SELECT hash(item_id, task) AS h FROM {table} GROUP BY h HAVING count(*) > 1)
        SELECT t.* FROM {table} t ANTI JOIN again a ON hash(t.item_id, t.task) = a.h
        UNION ALL BY NAME
        SELECT t.* FROM {table} t SEMI JOIN again a ON hash(t.item_id, t.task) = a.h
        LEFT JOIN run_times r ON r.run_id = t.run_id
        QUALIFY row_number() OVER (PARTITION BY t.item_id, t.task
                                   ORDER BY {_RUN_AT.format(t="t")} DESC, t.run_id DESC) = 1"""


def _corpus_wer(keys: str) -> str:
    return f"""
        SELECT {keys},
            count(*) AS items,
            count(ref_words) AS scored_items,
            sum(duration_s) AS audio_s,
            string_agg(DISTINCT normalizer, ',' ORDER BY normalizer) AS normalizer,
            sum(ref_words)::BIGINT AS ref_words,
            sum(substitutions)::BIGINT AS substitutions,
            sum(deletions)::BIGINT AS deletions,
            sum(insertions)::BIGINT AS insertions,
            sum(substitutions + deletions + insertions)::BIGINT AS edits,
            sum(substitutions + deletions + insertions) / nullif(sum(ref_words), 0) AS wer,
            sum(ref_chars)::BIGINT AS ref_chars,
            sum(char_edits)::BIGINT AS char_edits,
            sum(char_edits) / nullif(sum(ref_chars), 0) AS cer
        FROM latest GROUP BY {keys}"""


def _errors_open() -> str:
    # Only the items that have errors matter: the result tables are read for those alone.
    done = " UNION ALL ".join(
        f"SELECT item_id, task, run_id FROM {t} SEMI JOIN errors USING (item_id)"
        for t in RESULT_TABLES
    )
    # The other items of a shard that failed as a whole (member ""), read later.
    shard_rows = " UNION ALL ".join(
        f"SELECT source_uri, task, run_id FROM {t} SEMI JOIN whole USING (source_uri)"
        for t in RESULT_TABLES
    )
    return f"""
        WITH whole AS (
            SELECT DISTINCT source_uri FROM errors WHERE member = ''
        ), done AS (
            SELECT d.item_id, d.task, max({_run_order("d")}) AS ok_at
            FROM ({done}) d LEFT JOIN run_times r ON r.run_id = d.run_id
            GROUP BY d.item_id, d.task
        ), read_ok AS (
            SELECT item_id, max(ok_at) AS ok_at FROM (
                SELECT item_id, ok_at FROM done
                UNION ALL
                SELECT d.item_id, {_run_order("d")} FROM errors d
                LEFT JOIN run_times r ON r.run_id = d.run_id WHERE d.task IS NOT NULL
            ) GROUP BY item_id
        ), shard_done AS (
            SELECT s.source_uri, s.task, max({_run_order("s")}) AS ok_at
            FROM ({shard_rows}) s LEFT JOIN run_times r ON r.run_id = s.run_id
            GROUP BY s.source_uri, s.task
        ), shard_read AS (
            SELECT source_uri, max(ok_at) AS ok_at FROM shard_done GROUP BY source_uri
        ), e AS (
            SELECT e.*, {_RUN_AT.format(t="e")} AS error_at, {_run_order("e")} AS _at
            FROM errors e LEFT JOIN run_times r ON r.run_id = e.run_id
        )
        SELECT e.* EXCLUDE (_at) FROM e
        LEFT JOIN done ON done.item_id = e.item_id AND done.task = e.task
        LEFT JOIN read_ok ON read_ok.item_id = e.item_id AND e.task IS NULL
        LEFT JOIN shard_done sd
            ON e.member = '' AND sd.source_uri = e.source_uri AND sd.task = e.task
        LEFT JOIN shard_read sr
            ON e.member = '' AND sr.source_uri = e.source_uri AND e.task IS NULL
        WHERE (e.task IS NOT NULL AND (done.ok_at IS NULL OR done.ok_at <= e._at)
               AND (sd.ok_at IS NULL OR sd.ok_at <= e._at))
           OR (e.task IS NULL AND (read_ok.ok_at IS NULL OR read_ok.ok_at <= e._at)
               AND (sr.ok_at IS NULL OR sr.ok_at <= e._at))"""


CONVENIENCE_VIEWS: dict[str, str] = {
    "run_times": "SELECT run_id, min(started_at) AS started_at FROM runs GROUP BY run_id",
    **{latest_view(t): _latest(t) for t in RESULT_TABLES},
    "corpus_wer": _corpus_wer("task"),
    "corpus_wer_by_shard": _corpus_wer("task, shard"),
    "errors_open": _errors_open(),
}

VIEWS = (*TABLES, *CONVENIENCE_VIEWS)


def register(
    con,
    root: str,
    present: Iterable[str],
    compacted: Mapping[str, Published] | None = None,
    older: Iterable[str] = (),
) -> None:
    """Create every view on `con` for the output at `root` (a local absolute path or a URI
    whose filesystem `con` can read); `present` names the tables that have files;
    `compacted` holds each table's compaction manifest (`io.compacted.published`), read
    before anything listed the table's files; `older` names the tables that may hold files
    written before a column of their schema existed (`table_source`)."""
    present, compacted, older = set(present), compacted or {}, set(older)
    for table in TABLES:
        state = compacted.get(table)
        body = (
            table_source(root, table, state, older_files=table in older)
            if table in present
            else None
        )
        if body and table in older:  # every column of the schema, even if no file has it yet
            body = f"({empty_select(con, table)}) UNION ALL BY NAME ({body})"
        con.execute(f"CREATE OR REPLACE VIEW {table} AS {body or empty_select(con, table)}")
    for name, body in CONVENIENCE_VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")
