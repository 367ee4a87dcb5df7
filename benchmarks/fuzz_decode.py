"""R2 at scale: 20,000 mutants through decode_audio (README "Reliability").

    PYTHONPATH=$PWD .venv/bin/python benchmarks/fuzz_decode.py [--mutants 20000] [--workers 2]

The mutants are cut into chunks of 1,000, each decoded in its own process with a
deadline (a chunk past it counts as a hang); a chunk's process reports its outcomes,
crashes (anything but AudioDecodeError or valid audio) and peak RSS. Prints the
totals and appends them to benchmarks/RESULTS.md with the machine named.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
CHUNK = 1000
DEADLINE_S = 600

_RUN = """
import json, resource, sys, time
from pipeline.testing.fuzz import fuzz_decode
t = time.process_time()
r = fuzz_decode(int(sys.argv[1]), seed=int(sys.argv[2]))
print(json.dumps({"mutants": r.mutants, "outcomes": r.outcomes, "crashes": r.crashes,
                  "peak_rss_mb": r.peak_rss_mb, "cpu_s": time.process_time() - t}))
"""


def _chunk(seed: int, n: int) -> dict:
    try:
        out = subprocess.run(
            [sys.executable, "-c", _RUN, str(n), str(seed)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=DEADLINE_S,
        )
    except subprocess.TimeoutExpired:
        return {"seed": seed, "hang": True}
    if out.returncode != 0:
        return {"seed": seed, "died": out.returncode, "stderr": out.stderr[-500:]}
    return {"seed": seed, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mutants", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--first-seed", type=int, default=1000)
    args = p.parse_args()
    sizes = [min(CHUNK, args.mutants - i) for i in range(0, args.mutants, CHUNK)]
    t = time.monotonic()
    with ThreadPoolExecutor(args.workers) as pool:
        chunks = list(
            pool.map(lambda a: _chunk(*a), [(args.first_seed + i, n) for i, n in enumerate(sizes)])
        )
    wall = time.monotonic() - t
    outcomes: collections.Counter = collections.Counter()
    for c in chunks:
        outcomes.update(c.get("outcomes", {}))
    crashes = [x for c in chunks for x in c.get("crashes", [])]
    hangs = [c["seed"] for c in chunks if c.get("hang")]
    died = [c for c in chunks if "died" in c]
    mutants = sum(c.get("mutants", 0) for c in chunks)
    cpu = sum(c.get("cpu_s", 0.0) for c in chunks)
    peak = max((c.get("peak_rss_mb", 0.0) for c in chunks), default=0.0)
    lines = [
        f"mutants decoded: {mutants:,} of {args.mutants:,} in {len(chunks)} chunks "
        f"(seeds {args.first_seed}..{args.first_seed + len(chunks) - 1})",
        f"crashes: {len(crashes)}; hung chunks: {len(hangs)}; processes that died: {len(died)}",
        f"peak RSS of one chunk process: {peak:.0f} MiB",
        f"decode CPU: {cpu:.1f} s = {1000 * cpu / max(mutants, 1):.2f} ms per mutant; wall {wall:.1f} s",
        "outcomes: " + ", ".join(f"{k} {v:,}" for k, v in outcomes.most_common()),
    ]
    for line in lines + crashes[:20]:
        print(line)
    machine = f"{platform.node() or 'vm'}: {os.cpu_count()} cores, shared with other work"
    with RESULTS.open("a") as f:
        f.write(
            f"\n## decode_audio fuzzing (`fuzz_decode.py`) — {datetime.now(UTC):%Y-%m-%d} — "
            f"{machine}\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"
        )
        for crash in crashes[:20]:
            f.write(f"  - crash: `{crash}`\n")
    sys.exit(1 if crashes or hangs or died else 0)


if __name__ == "__main__":
    main()
