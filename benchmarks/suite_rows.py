"""The row each GPU benchmark adds to the suite's table (benchmarks/gpu_suite.py).

A benchmark run by the suite finds the path of a JSON-lines file in `ROWS_ENV` and
appends one record per row; run on its own, it only prints.
"""

from __future__ import annotations

import json
import os

ROWS_ENV = "AUDIOBATCH_SUITE_ROWS"


def emit(
    model: str,
    batch: int | str,
    e2e: float,
    ceiling: float | None,
    peak_gib: float | None = None,
    note: str = "",
) -> None:
    """One row: realtime factors (audio seconds per wall second) end to end and of the raw
    model, measured side by side in one run; this process's peak GPU memory."""
    path = os.environ.get(ROWS_ENV)
    if not path:
        return
    row = {"model": model, "batch": batch, "e2e": e2e, "ceiling": ceiling, "peak_gib": peak_gib}
    with open(path, "a") as f:
        f.write(json.dumps({**row, "note": note}) + "\n")


def torch_peak_gib() -> float | None:
    """Peak GPU memory torch allocated in this process, in GiB; None without CUDA."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**30
