"""One torch CPU thread for the builders' calibration forwards.

The tiny-model builders redraw a model's head from statistics of a forward pass over
calibration audio. A forward's float sums depend on how many threads split them, so
with the caller's thread count (whatever a model stage's `configure_threads` last set
in the process) one seed gave different heads: `tests/stages/test_ctc.py`'s
per-seed determinism test failed when `tests/stages/test_model.py` ran first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU ops on one thread inside; the caller's thread count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
