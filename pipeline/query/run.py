"""Running one user statement: checked (`confine.check_statement`), then fetched as Arrow."""

from __future__ import annotations

import pyarrow as pa

from pipeline.query.confine import QueryError, check_statement


def run_statement(con, sql: str, limit: int | None = None) -> tuple[pa.Table, bool]:
    """The result of the one read-only statement in `sql` (at most `limit` rows), and whether
    rows were cut by the limit. DuckDB's own message (and a syntax error's position) is kept."""
    import duckdb

    check_statement(sql)
    try:
        rel = con.sql(sql)
        if rel is None:  # DuckDB returns no relation for statements without a result
            return pa.table({}), False
        if limit is None:
            return rel.to_arrow_table(), False
        table = rel.limit(limit + 1).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from None
    return table.slice(0, limit), table.num_rows > limit
