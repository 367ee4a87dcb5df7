"""Reading one table file: JSONL, CSV, TSV or Parquet, each also gzipped (`.gz`).

Manifests, text tables and speaker tables are read through here. TSV is read
without quote processing unless asked (Common Voice TSVs are unquoted); with
`bad_rows`, a line that cannot be parsed is reported as (line, why) instead of
failing the whole file, so the caller can make it an error row.
"""

from __future__ import annotations

import gzip
import json
from contextlib import nullcontext

import pyarrow as pa

from pipeline.errors import InputError
from pipeline.io.storage import filesystem
from pipeline.spec import StorageOptions


def read_table_file(
    uri: str,
    storage: StorageOptions,
    what: str = "table",
    *,
    quoting: str = "auto",
    bad_rows: list | None = None,
) -> pa.Table:
    """Read one JSONL / CSV / TSV / Parquet file (each also as .gz); raise InputError naming
    it (as `what`).

    With `bad_rows`, lines that cannot be parsed are appended there as (line, why)
    instead of failing the file; without it, they fail it."""
    fs, path = filesystem(uri, storage)
    name = path.lower()
    gz = name.endswith(".gz")
    suffix = name.removesuffix(".gz").rsplit(".", 1)[-1]
    try:
        with fs.open(path, "rb") as raw, gzip.open(raw) if gz else nullcontext(raw) as f:
            if suffix in ("jsonl", "json", "ndjson"):
                return _read_jsonl(f.read(), uri, what, bad_rows)
            if suffix in ("csv", "tsv"):
                return _read_delimited(f, suffix, quoting, bad_rows)
            if suffix == "parquet":
                import pyarrow.parquet as pq

                return pq.read_table(pa.BufferReader(f.read()) if gz else f)
    except FileNotFoundError:
        raise InputError(f"{what} {uri} does not exist") from None
    except (pa.ArrowInvalid, ValueError, OSError, EOFError) as exc:
        raise InputError(f"{what} {uri} could not be parsed: {exc}") from None
    raise InputError(
        f"{what} {uri}: unknown format '.{suffix}' (use .jsonl, .csv, .tsv or .parquet, "
        "optionally .gz)"
    )


def _read_delimited(f, suffix: str, quoting: str, bad_rows: list | None) -> pa.Table:
    """CSV with quotes; TSV (Common Voice, LibriSpeech-style tables) without, unless asked."""
    import pyarrow.csv as pacsv

    quoted = quoting == "csv" or (quoting == "auto" and suffix == "csv")

    def skip(row) -> str:
        bad_rows.append(  # type: ignore[union-attr]
            (row.number, f"{row.actual_columns} fields where the header has {row.expected_columns}")
        )
        return "skip"

    opts = pacsv.ParseOptions(
        delimiter="\t" if suffix == "tsv" else ",",
        quote_char='"' if quoted else False,
        invalid_row_handler=skip if bad_rows is not None else None,
    )
    # One thread: the invalid-row handler then knows each bad row's line number.
    return pacsv.read_csv(f, parse_options=opts, read_options=pacsv.ReadOptions(use_threads=False))


def _read_jsonl(data: bytes, uri: str, what: str, bad_rows: list | None) -> pa.Table:
    rows = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            why = None if isinstance(row, dict) else "is not a JSON object"
        except json.JSONDecodeError as exc:
            why = f"is not valid JSON: {exc}"
        if why and bad_rows is None:
            raise InputError(f"{what} {uri} line {n} {why}")
        if why:
            bad_rows.append((n, why))  # type: ignore[union-attr]
            continue
        if bad_rows is not None:
            row["__line__"] = n  # so an entry's errors can name its line
        rows.append(row)
    # Keys may first appear on any line; a key whose values Arrow cannot put in one type
    # (7 here, "alice" there) is kept as text rather than failing the whole file.
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return pa.table({k: _column([row.get(k) for row in rows]) for k in keys})


def _column(values: list) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array(
            [
                None if v is None else json.dumps(v) if isinstance(v, list | dict) else str(v)
                for v in values
            ],
            pa.string(),
        )
