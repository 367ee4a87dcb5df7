"""The GPU suite: every GPU benchmark in one process tree, in under 8 minutes, one table.

    python benchmarks/gpu_suite.py --out gpu_suite.md            # on the GPU machine
    python benchmarks/gpu_suite.py --smoke --out /tmp/smoke.md   # anywhere: tiny models, CPU

On the GPU machine (docs/FACTS.md: Python 3.12, torch 2.11, transformers
5.17, no Ray/jiwer/soundfile/soxr/pydantic), pack what it lacks here once,
`bash ../shared/device/pack.sh ray jiwer soundfile soxr pydantic` (~49 MB), carry
`.devcarry`, and run
`python3 .devcarry/unpack.py && export PYTHONPATH=/tmp/site:$PWD && python3 benchmarks/gpu_suite.py --out $OUT/gpu_suite.md`.
Nothing else travels: models are random-init of the real sizes and the corpus is
generated there (speed depends on shapes, not weights).

Each benchmark runs as a child process with its own time budget (a child over budget is
ended and its row says so; the budgets add up to under 8 minutes) and adds its rows
through benchmarks/suite_rows.py; GPU memory is sampled device-wide with nvidia-smi while
it runs. `--smoke` runs the same code in this process with the tests' tiny models on the
CPU, in seconds, so a typo never costs GPU time (tests/benchmarks/test_gpu_suite.py).
The table goes to the file named by `--out` and to stdout; record it in
benchmarks/RESULTS.md with the machine named.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import suite_rows  # noqa: E402

SMOKE_CPU = ["--device", "cpu", "--tiny"]


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    args: list[str]  # on the GPU machine
    smoke: list[str]  # tiny models on the CPU
    budget_s: int  # wall seconds on one H200, start-up and model build included
    workdir: bool = True  # takes --workdir (models, corpora); the others use a temp folder


SUITE = [
    Bench("ctc", "bench_wav2vec2_gpu", ["--task", "ctc", "--items", "4000"],
          ["--task", "ctc", *SMOKE_CPU, "--items", "6"], 110),
    Bench("frames", "bench_wav2vec2_gpu", ["--task", "frames", "--items", "2048"],
          ["--task", "frames", *SMOKE_CPU, "--items", "4"], 40),
    Bench("ast", "bench_classify_gpu", ["--no-write", "--items", "2048"],
          ["--no-write", *SMOKE_CPU, "--items", "4"], 40, workdir=False),
    Bench("whisper", "bench_whisper_gpu",
          ["--no-write", "--items", "1024", "--pipeline-items", "128"],
          ["--no-write", *SMOKE_CPU, "--items", "2", "--pipeline-items", "2", "--tokens", "3",
           "--raw-batch", "2"], 140),
    Bench("synth", "bench_synth_gpu", ["--items", "512", "--batches", "64,256"],
          [*SMOKE_CPU, "--items", "2", "--batches", "2"], 70, workdir=False),
    Bench("mctct", "bench_mctct_gpu", ["--items", "96", "--repeats", "2"],
          [*SMOKE_CPU, "--items", "2", "--repeats", "1", "--longest", "3"], 70),
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="file the table is written to")
    ap.add_argument("--smoke", action="store_true", help="tiny models on the CPU, in-process")
    ap.add_argument("--only", help="comma-separated benchmark names (default: all)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "audiobatch-suite"))
    args = ap.parse_args(argv)
    chosen = [b for b in SUITE if not args.only or b.name in args.only.split(",")]
    workdir = Path(args.workdir) / ("smoke" if args.smoke else "gpu")
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = []
    for bench in chosen:
        run = _in_process if args.smoke else _child
        rows += run(bench, workdir)
    table = render(rows, time.perf_counter() - t0, args.smoke)
    Path(args.out).write_text(table)
    print(table)
    return 0 if all("error" not in r for r in rows) else 1


def _in_process(bench: Bench, workdir: Path) -> list[dict]:
    rows_file = workdir / f"{bench.name}.rows.jsonl"
    rows_file.unlink(missing_ok=True)
    os.environ[suite_rows.ROWS_ENV] = str(rows_file)
    t0 = time.perf_counter()
    try:
        importlib.import_module(bench.module).main(bench.smoke + _workdir(bench, workdir))
        error = None
    except (Exception, SystemExit) as exc:  # one failure must not hide the other rows
        error = f"{type(exc).__name__}: {exc}"
    finally:
        del os.environ[suite_rows.ROWS_ENV]
    return _rows(bench, rows_file, time.perf_counter() - t0, error, None)


def _child(bench: Bench, workdir: Path) -> list[dict]:
    rows_file = workdir / f"{bench.name}.rows.jsonl"
    rows_file.unlink(missing_ok=True)
    log = workdir / f"{bench.name}.log"
    cmd = [sys.executable, str(HERE / f"{bench.module}.py"), *bench.args]
    cmd += _workdir(bench, workdir)
    env = {**os.environ, suite_rows.ROWS_ENV: str(rows_file)}
    sampler = GpuMemory().start()
    t0 = time.perf_counter()
    with log.open("w") as f:
        child = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            code = child.wait(timeout=bench.budget_s)
            error = None if code == 0 else f"exit {code}: {_tail(log)}"
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            error = f"timed out after {bench.budget_s} s (budget): {_tail(log)}"
    return _rows(bench, rows_file, time.perf_counter() - t0, error, sampler.stop())


def _workdir(bench: Bench, workdir: Path) -> list[str]:
    return ["--workdir", str(workdir / bench.name)] if bench.workdir else []


def _rows(bench: Bench, rows_file: Path, wall: float, error, device_gib) -> list[dict]:
    rows = []
    if rows_file.exists():
        rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line]
    for r in rows:
        r.update(bench=bench.name, wall_s=wall, device_gib=device_gib)
    if error or not rows:
        rows.append({"bench": bench.name, "wall_s": wall, "error": error or "no row written"})
    return rows


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return " / ".join(lines[-3:])[-400:]


class GpuMemory:
    """Device-wide GPU memory in use, sampled every 0.25 s by nvidia-smi: the peak over the
    run minus what was in use before (so it counts a Ray actor's memory too)."""

    def __init__(self):
        self._smi = shutil.which("nvidia-smi")
        self._peak = self._base = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> GpuMemory:
        if self._smi:
            self._base = self._peak = self._used()
            self._thread.start()
        return self

    def stop(self) -> float | None:
        if not self._smi or self._base is None:
            return None
        self._stop.set()
        self._thread.join(timeout=2)
        return (self._peak - self._base) / 1024

    def _used(self) -> float | None:
        try:
            out = subprocess.run(
                [self._smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout  # fmt: skip
            return float(out.split()[0])  # MiB, first GPU
        except (subprocess.SubprocessError, OSError, ValueError, IndexError):
            return None

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            used = self._used()
            if used is not None and self._peak is not None:
                self._peak = max(self._peak, used)


def render(rows: list[dict], wall: float, smoke: bool) -> str:
    from pipeline.testing.machine import machine_line

    lines = [
        f"## GPU suite{' (smoke run: tiny models on the CPU, figures meaningless)' if smoke else ''}"
        f" — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {machine_line()}",
        "",
        f"{_versions()}; whole suite {wall:.0f} s wall. Realtime factors are audio seconds per "
        "wall second, end to end and of the raw model, measured side by side in one run.",
        "",
        "| bench | model | batch | end to end x | raw model x | ratio | GPU peak GiB "
        "(device / torch) | wall s | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['bench']} | - | - | - | - | - | - | {r['wall_s']:.0f} | "
                         f"**failed**: {_cell(r['error'])} |")  # fmt: skip
            continue
        ceiling = r.get("ceiling")
        ratio = f"{r['e2e'] / ceiling:.0%}" if ceiling else "-"
        lines.append(
            f"| {r['bench']} | {r['model']} | {r['batch']} | {r['e2e']:,.0f} | "
            f"{'-' if ceiling is None else f'{ceiling:,.0f}'} | {ratio} | "
            f"{_gib(r.get('device_gib'))} / {_gib(r.get('peak_gib'))} | {r['wall_s']:.0f} | "
            f"{_cell(r.get('note', ''))} |"
        )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in ("torch", "transformers", "ray"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} absent")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
