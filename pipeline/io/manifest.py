"""Manifests for the `files` input format: JSONL, CSV or Parquet with a `path` column.

`path` is relative to the input prefix (or an absolute path / URI), `text` (or
`reference`/`transcript`) is the reference transcript, and every other column is
kept as the item's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

from pipeline.errors import InputError
from pipeline.io.storage import filesystem
from pipeline.spec import StorageOptions

_TEXT_COLUMNS = ("text", "reference", "transcript", "sentence")


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    text: str | None
    metadata: str | None  # JSON object of the other columns


def read_manifest(uri: str, storage: StorageOptions) -> list[ManifestEntry]:
    """Read a manifest; raise InputError naming the file and the problem."""
    table = read_table_file(uri, storage, what="manifest")
    if "path" not in table.column_names:
        raise InputError(
            f"manifest {uri} has no `path` column (columns: {', '.join(table.column_names)})"
        )
    text_col = next((c for c in _TEXT_COLUMNS if c in table.column_names), None)
    extra = [c for c in table.column_names if c not in ("path", text_col)]
    entries = []
    for row in table.to_pylist():
        if not row["path"]:
            raise InputError(f"manifest {uri} has a row with an empty `path`: {row}")
        meta = {k: row[k] for k in extra if row[k] is not None}
        text = row[text_col] if text_col else None
        entries.append(
            ManifestEntry(
                str(row["path"]),
                None if text is None else str(text),
                json.dumps(meta, default=str) if meta else None,
            )
        )
    # A path named twice (or two spellings of one file) is the listing's to record as a
    # duplicate_id error row: one bad row must not stop the job.
    return entries


def read_table_file(uri: str, storage: StorageOptions, what: str = "table") -> pa.Table:
    """Read one JSONL / CSV / TSV / Parquet file; raise InputError naming it (as `what`)."""
    fs, path = filesystem(uri, storage)
    suffix = path.lower().rsplit(".", 1)[-1]
    try:
        with fs.open(path, "rb") as f:
            if suffix in ("jsonl", "json", "ndjson"):
                return _read_jsonl(f.read(), uri, what)
            if suffix in ("csv", "tsv"):
                import pyarrow.csv as pacsv

                opts = pacsv.ParseOptions(delimiter="\t" if suffix == "tsv" else ",")
                return pacsv.read_csv(f, parse_options=opts)
            if suffix == "parquet":
                import pyarrow.parquet as pq

                return pq.read_table(f)
    except FileNotFoundError:
        raise InputError(f"{what} {uri} does not exist") from None
    except (pa.ArrowInvalid, ValueError) as exc:
        raise InputError(f"{what} {uri} could not be parsed: {exc}") from None
    raise InputError(
        f"{what} {uri}: unknown format '.{suffix}' (use .jsonl, .csv, .tsv or .parquet)"
    )


def _read_jsonl(data: bytes, uri: str, what: str) -> pa.Table:
    rows = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{what} {uri} line {n} is not valid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise InputError(f"{what} {uri} line {n} is not a JSON object")
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
