"""Where and how a model runs: device, dtype, mixed precision, CPU threads.

Every model loader and stage takes these from here, so `auto` means the same thing
for every kind of model.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pipeline.errors import ModelLoadError

if TYPE_CHECKING:
    import torch


def pick_device(requested: str) -> str:
    """`auto` -> cuda when this process sees a GPU, else cpu."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device: cuda was requested but this worker sees no GPU")
    return requested


def configure_threads(device: str, cpu_threads: int | None = None) -> None:
    """Use the CPUs this process may run on, unless the spec or the launcher (Ray) chose.

    Every model stage calls this once, before its first forward."""
    # oneDNN caches one conv primitive per input shape (default 1,024 of them); with
    # length-sorted batches nearly every batch is a new shape, and a CPU actor grew by
    # ~20 MiB a batch (benchmarks/RESULTS.md). 16 entries kept speed and bounded memory.
    # Read when oneDNN first runs, so this must precede the first forward.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
    import torch

    if device == "cpu" and cpu_threads:
        torch.set_num_threads(cpu_threads)
        return
    if os.environ.get("OMP_NUM_THREADS"):  # Ray sets it from the actor's num_cpus
        return
    available = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    # On a GPU the CPU only prepares inputs; leave cores for decode tasks on the node.
    torch.set_num_threads(available if device == "cpu" else min(available, 4))


def pick_dtype(requested: str, device: str) -> torch.dtype:
    """`auto` -> float32 on CPU, bfloat16 on CUDA."""
    import torch

    if requested == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, requested)


def uses_autocast(device: str, dtype: torch.dtype) -> bool:
    """Mixed precision runs on CUDA with a half dtype only; CPU models run in their dtype."""
    import torch

    return device.startswith("cuda") and dtype != torch.float32


def autocast(device: str, dtype: torch.dtype):
    """The autocast context every model adapter runs its forward passes in."""
    import torch

    return torch.autocast("cuda", dtype=dtype, enabled=uses_autocast(device, dtype))
