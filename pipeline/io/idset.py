"""A compact, picklable set of item ids (sorted fixed-width bytes, binary search)."""

from __future__ import annotations

import numpy as np


class IdSet:
    def __init__(self, sorted_ids: np.ndarray | None = None):
        self._ids = sorted_ids if sorted_ids is not None else np.array([], dtype="S1")

    @property
    def ids(self) -> np.ndarray:
        """The sorted ids (fixed-width bytes)."""
        return self._ids

    def contains_many(self, item_ids: list[str]) -> np.ndarray:
        """Membership of many ids at once (bool array)."""
        if not len(self._ids) or not item_ids:
            return np.zeros(len(item_ids), dtype=bool)
        keys = np.array(item_ids, dtype="S")
        i = np.minimum(np.searchsorted(self._ids, keys), len(self._ids) - 1)
        return self._ids[i] == keys

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        if not len(self._ids):
            return False
        key = item_id.encode()
        i = int(np.searchsorted(self._ids, key))
        return i < len(self._ids) and self._ids[i] == key
