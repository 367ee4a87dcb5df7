"""Writing a query's result (an Arrow table) as text or Parquet.

The writing happens here, in Python, at the path the user named: the DuckDB connection
itself cannot write anywhere (`pipeline.query.confine`).
"""

from __future__ import annotations

import json
import sys

import pyarrow as pa

from pipeline.query import FORMATS
from pipeline.query.confine import QueryError

_CELL = 48  # characters of a cell shown in `table` format; the text formats keep everything


def write_result(result: pa.Table, fmt: str, out: str | None, *, more: bool = False) -> None:
    """Write `result` in `fmt` to the file `out` (stdout when None). `more`: the result was
    cut at a row limit, which `table` and `markdown` say."""
    if fmt == "parquet":
        if out is None:
            raise QueryError("--format parquet needs --out FILE")
        import pyarrow.parquet as pq

        pq.write_table(result, out, compression="zstd")
        return
    text = render(result, fmt, more=more)
    if out is None:
        sys.stdout.write(text)
    else:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)


def render(result: pa.Table, fmt: str, *, more: bool = False) -> str:
    """`result` as text in one of the text formats."""
    if fmt == "csv":
        return _csv(result)
    rows = result.to_pylist()
    if fmt == "json":
        return json.dumps(rows, default=str, ensure_ascii=False, indent=1) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in rows)
    if fmt in ("table", "markdown"):
        note = f"{len(rows):,} row{'s' if len(rows) != 1 else ''}" + (
            " shown; more were cut by the row limit (--limit N)" if more else ""
        )
        body = _grid(result.column_names, rows, markdown=fmt == "markdown")
        return body + ("\n" if fmt == "markdown" else "") + f"({note})\n"
    raise QueryError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def _csv(result: pa.Table) -> str:
    import io

    import pyarrow.csv as pacsv

    # CSV has no nested values: lists and structs are written as JSON text.
    for i, field in enumerate(result.schema):
        if pa.types.is_nested(field.type):
            values = [
                None if v is None else json.dumps(v, default=str)
                for v in result.column(i).to_pylist()
            ]
            result = result.set_column(i, field.name, pa.array(values, pa.string()))
    buf = io.BytesIO()
    pacsv.write_csv(result, buf)
    return buf.getvalue().decode("utf-8")


def _grid(names: list[str], rows: list[dict], *, markdown: bool) -> str:
    cells = [[_cell(r[n], markdown) for n in names] for r in rows]
    header = [n.replace("|", "\\|") if markdown else n for n in names]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]

    def line(values: list[str]) -> str:
        padded = [v.ljust(w) for v, w in zip(values, widths, strict=True)]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded).rstrip()

    rule = (
        "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        if markdown
        else "  ".join("-" * w for w in widths)
    )
    return "\n".join([line(header), rule, *(line(c) for c in cells)]) + "\n"


def _cell(value, markdown: bool) -> str:
    if value is None:
        return "NULL"
    nested = isinstance(value, list | dict)
    text = json.dumps(value, default=str, ensure_ascii=False) if nested else str(value)
    text = text.replace("\n", " ")
    if markdown:
        return text.replace("|", "\\|")
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"
