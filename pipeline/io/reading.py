"""Reading one work unit into item tables (runs inside Ray read tasks; plain Python).

Yields Arrow tables in the unit's format schema (`columns.ITEM_SCHEMA`, or
`TEXT_ITEM_SCHEMA` for texts). A file or member that cannot be read becomes an
error row, and an unparseable shard one error row for the shard, so nothing is
dropped silently. Ids already written are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from pipeline.io.formats import FORMATS
from pipeline.io.idset import IdSet
from pipeline.io.units import WorkUnit, batches
from pipeline.spec import InputSpec


def read_unit(
    unit: WorkUnit, spec: InputSpec, max_bytes: int, batch: int = 32, done: IdSet | None = None
) -> Iterator[pa.Table]:
    """Read one work unit into item tables of at most `batch` rows, skipping ids in `done`."""
    fmt = FORMATS[unit.format]
    yield from batches(fmt.read_rows(unit, spec, max_bytes, batch), fmt.schema, batch, done)
