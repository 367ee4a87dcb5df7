"""Changed sources and settled shards, from listings and records built in the test."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.io.completion import Completion, Records, source_state
from pipeline.io.idset import IdSet
from pipeline.io.sources import changed_sources, settled_shards


def _records(rows: list[tuple[str, str, int | None, str | None]]) -> Records:
    """(item, run, size, version) rows of one task, all from source s://<item's letter>."""
    table = pa.table(
        {
            "item_id": [r[0] for r in rows],
            "task": ["t"] * len(rows),
            "run_id": [r[1] for r in rows],
            "source_uri": [f"s://{r[0][0]}" for r in rows],
            "source_size": pa.array([r[2] for r in rows], pa.int64()),
            "source_version": pa.array([r[3] for r in rows], pa.string()),
        }
    )
    return Records(table, np.array([], dtype="S1"))


def _listed(rows: list[tuple[str, int, str | None]]) -> pa.Table:
    return pa.table(
        {
            "source_uri": [r[0] for r in rows],
            "size": pa.array([r[1] for r in rows], pa.int64()),
            "version": pa.array([r[2] for r in rows], pa.string()),
        }
    )


def test_latest_records_decide_and_old_records_never_count_as_changed():
    records = _records(
        [
            ("a1", "r1", 10, "v1"),
            ("a1", "r2", 11, "v2"),  # a's latest: 11/v2
            ("b1", "r1", 5, "v1"),
            ("c1", "r1", None, None),  # written before the columns existed
        ]
    )
    state = source_state(records)
    listed = _listed(
        [("s://a", 11, "v2"), ("s://b", 5, "v9"), ("s://c", 99, "v1"), ("s://d", 1, "x")]
    )
    assert changed_sources(listed, state) == ("s://b",)
    assert changed_sources(_listed([("s://a", 10, "v1")]), state) == ("s://a",)


def test_a_unit_record_at_the_present_version_is_not_changed():
    state = source_state(_records([("a1", "r1", 10, "v1")]))
    listed = _listed([("s://a", 12, "v2")])
    units = pa.table({"shard_uri": ["s://a"], "size": [12], "version": ["v2"]})
    assert changed_sources(listed, state, units) == ()


def test_settled_shards_need_every_task_and_nothing_pending(tmp_path):
    import fsspec

    from pipeline.io.units import Listing

    fs = fsspec.filesystem("file")
    paths = [f"{tmp_path}/a.tar", f"{tmp_path}/b.tar", f"{tmp_path}/c.tar"]
    listing = Listing(fs, str(tmp_path), dict.fromkeys(paths, 10), (), dict.fromkeys(paths, "v1"))
    units = pa.table(
        {
            "shard_uri": paths,
            "size": pa.array([10, 10, 10], pa.int64()),
            "version": ["v1", "v1", "v0"],  # c changed since its record
            "items": pa.array([None, None, None], pa.int64()),
            "tasks": [["t", "u"], ["t"], ["t", "u"]],
            "run_id": ["r1"] * 3,
        }
    )
    records = Records(
        pa.table({"source_uri": [paths[0], paths[0]], "item_id": ["x", "y"]}),
        np.array([], dtype="S1"),
    )
    done = Completion({}, IdSet(), 0, 0)
    assert settled_shards(listing, units, records, done, ["t", "u"]) == {paths[0]: 2}
    assert settled_shards(listing, units, records, done, ["t"]) == {paths[0]: 2, paths[1]: 0}
    pending = Completion({}, IdSet(), 1, 0, pending_sources=frozenset({paths[0]}))
    assert settled_shards(listing, units, records, pending, ["t"]) == {paths[1]: 0}
