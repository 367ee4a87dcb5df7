"""The `audiobatch query` and `audiobatch compact` subcommands (registered in `pipeline/cli.py`)."""

from __future__ import annotations

import argparse

from pipeline.query import FORMATS


def add_parsers(sub) -> None:
    q = sub.add_parser(
        "query",
        help="SQL over an output's tables with DuckDB (read-only); no SQL: interactive prompt",
        description="Views: transcripts, classifications, syntheses, errors, runs, latest, "
        "latest_classifications, latest_syntheses, corpus_wer, corpus_wer_by_shard, "
        "errors_open, run_times (see pipeline/query/views.py).",
    )
    q.add_argument("output", help="output folder or object-storage URI of a job")
    q.add_argument("sql", nargs="?", help="one SELECT / DESCRIBE / SHOW / SUMMARIZE / EXPLAIN")
    q.add_argument("--format", choices=FORMATS, default="table")
    q.add_argument("--out", metavar="FILE", help="write the result here (default: stdout)")
    q.add_argument("--limit", type=_positive, metavar="N", help="at most N rows")
    q.add_argument("--endpoint-url", help="S3-compatible endpoint for the output")
    q.set_defaults(func=_query)
    _add_compact(sub)


def _add_compact(sub) -> None:
    c = sub.add_parser(
        "compact",
        help="rewrite a table's many small files into a few (readers see no duplicate or gap)",
        description="Per partition, the small Parquet files of each table are rewritten into "
        "files of about --target-mb, published by one manifest in _compaction/; the files "
        "replaced are deleted by a later compact, once --grace-s has passed. Takes the "
        "output's lease: exits 3 while a run holds it. Also merges _completion/.",
    )
    c.add_argument("output", help="output folder or object-storage URI of a job")
    c.add_argument("--table", action="append", metavar="NAME", help="only this table (repeatable)")
    c.add_argument("--target-mb", type=float, default=128.0, help="size of a merged file")
    c.add_argument(
        "--grace-s",
        type=float,
        default=3600.0,
        help="replaced files stay readable this long before a later compact deletes them",
    )
    c.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    c.add_argument("--endpoint-url", help="S3-compatible endpoint for the output")
    c.set_defaults(func=_compact)


def _query(args) -> int:
    from pipeline.query.connection import connect
    from pipeline.query.formats import write_result
    from pipeline.query.run import run_statement
    from pipeline.query.shell import interactive
    from pipeline.spec import StorageOptions

    con = connect(args.output, StorageOptions(endpoint_url=args.endpoint_url))
    if args.sql is None:
        interactive(con)
        return 0
    result, more = run_statement(con, args.sql, args.limit)
    write_result(result, args.format, args.out, more=more)
    return 0


def _compact(args) -> int:
    from pipeline.errors import AudiobatchError
    from pipeline.io.compact import CompactOptions, compact_output
    from pipeline.schemas import TABLES
    from pipeline.spec import StorageOptions

    unknown = sorted(set(args.table or ()) - set(TABLES))
    if unknown:
        raise AudiobatchError(f"no table {', '.join(unknown)}: the tables are {', '.join(TABLES)}")
    options = CompactOptions(
        tables=tuple(args.table or TABLES),
        target_bytes=int(args.target_mb * 2**20),
        grace_s=args.grace_s,
        dry_run=args.dry_run,
    )
    compact_output(args.output, StorageOptions(endpoint_url=args.endpoint_url), options)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value
