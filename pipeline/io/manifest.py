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
    table = _read_table(uri, storage)
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
    paths = [e.path for e in entries]
    if len(set(paths)) != len(paths):
        dupes = sorted({p for p in paths if paths.count(p) > 1})[:5]
        raise InputError(
            f"manifest {uri} lists the same path more than once (e.g. {', '.join(dupes)})"
        )
    return entries


def _read_table(uri: str, storage: StorageOptions) -> pa.Table:
    fs, path = filesystem(uri, storage)
    suffix = path.lower().rsplit(".", 1)[-1]
    try:
        with fs.open(path, "rb") as f:
            if suffix in ("jsonl", "json", "ndjson"):
                return _read_jsonl(f.read(), uri)
            if suffix in ("csv", "tsv"):
                import pyarrow.csv as pacsv

                opts = pacsv.ParseOptions(delimiter="\t" if suffix == "tsv" else ",")
                return pacsv.read_csv(f, parse_options=opts)
            if suffix == "parquet":
                import pyarrow.parquet as pq

                return pq.read_table(f)
    except FileNotFoundError:
        raise InputError(f"manifest {uri} does not exist") from None
    except (pa.ArrowInvalid, ValueError) as exc:
        raise InputError(f"manifest {uri} could not be parsed: {exc}") from None
    raise InputError(
        f"manifest {uri}: unknown format '.{suffix}' (use .jsonl, .csv, .tsv or .parquet)"
    )


def _read_jsonl(data: bytes, uri: str) -> pa.Table:
    rows = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"manifest {uri} line {n} is not valid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise InputError(f"manifest {uri} line {n} is not a JSON object")
        rows.append(row)
    return pa.Table.from_pylist(rows)
