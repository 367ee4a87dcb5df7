"""The `audiobatch query` subcommand (registered in `pipeline/cli.py`)."""

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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value
