"""SQL over an output's tables with DuckDB, read-only and confined to the output.

    from pipeline.query import connect
    con = connect("s3://bucket/out/")          # or a local folder
    con.sql("FROM corpus_wer").df()

`connect` (`pipeline.query.connection`) registers the views of `pipeline.query.views` (the one
definition of each, shared by `audiobatch query`, the report and the tests) and confines the
connection; `check_statement` (`pipeline.query.confine`) is the rule `audiobatch query`
applies before it runs a statement; `run_statement` (`pipeline.query.run`) does both.
Names are imported on first use, so `audiobatch --help` does not load DuckDB.
"""

from __future__ import annotations

import importlib

# The result formats `audiobatch query --format` offers (written by pipeline.query.formats);
# kept here, not in either module, so the command and the writers share it without a cycle.
FORMATS = ("table", "csv", "json", "jsonl", "parquet", "markdown")

_EXPORTS = {
    "connect": "pipeline.query.connection",
    "register": "pipeline.query.views",
    "VIEWS": "pipeline.query.views",
    "check_statement": "pipeline.query.confine",
    "QueryError": "pipeline.query.confine",
    "RefusedStatement": "pipeline.query.confine",
    "run_statement": "pipeline.query.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.query' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
