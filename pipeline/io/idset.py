"""A compact, picklable set of item ids (sorted fixed-width bytes, binary search)."""

from __future__ import annotations

import numpy as np


class IdSet:
    def __init__(self, sorted_ids: np.ndarray | None = None):
        self._ids = sorted_ids if sorted_ids is not None else np.array([], dtype="S1")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        if not len(self._ids):
            return False
        key = item_id.encode()
        i = int(np.searchsorted(self._ids, key))
        return i < len(self._ids) and self._ids[i] == key
