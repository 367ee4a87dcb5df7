"""What a query may do: read the output's tables, nothing else.

Two rules, both needed (docs/FACTS.md, DuckDB 2.0.1):
- `confine` lets the connection open files only under the output (`allowed_directories`,
  then `enable_external_access=false`, then `lock_configuration=true`, in that order: set
  the other way round, the directory list cannot be set). That also blocks `INSTALL`,
  `LOAD`, `ATTACH` and any later `SET`. It does not block writing inside the output
  (`COPY ... TO`), so
- `check_statement` accepts one statement that DuckDB's own parser reports as a SELECT
  (which covers `DESCRIBE`, `SHOW`, `SUMMARIZE`, `FROM t`, `VALUES`, `WITH`), or an
  `EXPLAIN` / `EXPLAIN ANALYZE` of one (`EXPLAIN ANALYZE` runs the statement it explains).

The same rules hold for a registered fsspec filesystem (object storage): DuckDB checks
`s3://bucket/prefix/` paths against `allowed_directories` like local ones (tested).
"""

from __future__ import annotations

import re

from pipeline.errors import AudiobatchError


class QueryError(AudiobatchError):
    """A query could not run: DuckDB's message (with the position of a syntax error)."""


class RefusedStatement(QueryError):
    """A statement that `audiobatch query` does not run, and why."""


ALLOWED = "only SELECT (with DESCRIBE, SHOW, SUMMARIZE, FROM ..., VALUES) and EXPLAIN of one run"

# `EXPLAIN [ANALYZE] [(options)] statement`, after any leading comments.
_EXPLAIN = re.compile(
    r"^\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*explain\s+(?:analy[sz]e\s+)?(?:\([^)]*\)\s*)?(.*)$",
    re.IGNORECASE | re.DOTALL,
)


def check_statement(sql: str) -> str:
    """The one read-only statement in `sql`, or a `QueryError` / `RefusedStatement` saying why not."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from None
    if not statements:
        raise QueryError("no SQL statement given")
    if len(statements) > 1:
        raise RefusedStatement(
            f"one statement at a time: found {len(statements)} (a second one after ';')"
        )
    statement = statements[0]
    kind = statement.type.name
    if kind == "EXPLAIN":
        inner = _EXPLAIN.match(statement.query)
        if inner is None:
            raise RefusedStatement(f"cannot tell what this EXPLAIN explains; {ALLOWED}")
        check_statement(inner.group(1))
    elif kind != "SELECT":
        raise RefusedStatement(
            f"{kind} statements are refused: queries are read-only and confined to the output; "
            f"{ALLOWED}"
        )
    return sql


def confine(con, root: str) -> None:
    """Let `con` read only under `root` (an absolute local path or a URI), for good."""
    folder = root.rstrip("/") + "/"
    con.execute("SET autoinstall_known_extensions=false")
    con.execute("SET autoload_known_extensions=false")
    con.execute(f"SET allowed_directories=[{sql_literal(folder)}]")
    con.execute("SET enable_external_access=false")
    con.execute("SET lock_configuration=true")


def sql_literal(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
