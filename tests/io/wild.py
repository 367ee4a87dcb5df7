"""Reading a corpus the way a run does (plan, then every unit), for the wild-corpus tests."""

from __future__ import annotations

import json

from pipeline.io.listing import plan_input
from pipeline.io.reading import read_unit
from pipeline.spec import InputSpec

MAX = 64 * 2**20


def rows(**spec) -> list[dict]:
    s = InputSpec(**spec)
    plan = plan_input(s, items_per_unit=4)
    return [r for u in plan.units for t in read_unit(u, s, MAX, 8) for r in t.to_pylist()]


def by_member(items: list[dict]) -> dict[str, dict]:
    return {r["member"]: r for r in items}


def meta(row: dict) -> dict:
    return json.loads(row["metadata"] or "{}")
