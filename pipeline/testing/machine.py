"""The machine a benchmark ran on, as the one line its RESULTS.md section names.

Every benchmark heads its section with `machine_line()`, so figures from different
benchmarks (and machines) read side by side: host, cores, memory, GPU, and the load
average, which on a shared machine says how much of it the benchmark had.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess


def machine_line() -> str:
    """`vm: 2 cores, 24 GiB, no GPU, load average 2.4`: the host's name (`vm` when it has
    none), and the 1-minute load average when called (call it when the measuring ends)."""
    return (
        f"{platform.node() or 'vm'}: {os.cpu_count()} cores, {memory_gib():.0f} GiB, "
        f"{gpu_name()}, load average {os.getloadavg()[0]:.1f}"
    )


def memory_gib() -> float:
    """The machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def gpu_name() -> str:
    """The GPU nvidia-smi names (`2 x NAME` for two of them); `no GPU` without nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no GPU"
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return "GPU (nvidia-smi failed)"
    names = [n.strip() for n in done.stdout.splitlines() if n.strip()]
    if not names:
        return "no GPU (nvidia-smi lists none)"
    return names[0] if len(names) == 1 else f"{len(names)} x {names[0]}"
