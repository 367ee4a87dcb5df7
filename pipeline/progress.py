"""Progress of a running job: counters, rates, and the line printed on the terminal.

Plain Python so it is unit-testable; the runner keeps one `Counters` inside a Ray
actor that the sink and the stages report to, and prints `format_line` of it.

An item counts as done when it has cleared the model stages (the last one, `gate`):
writes land in a few large blocks, often only at the end of a small job, so counting
written rows showed "0/128 items" while the models advanced. Rates and the ETA come
from a `RateMeter` over the last minute, measured from the first item that cleared,
so start-up and model load do not drag them down for the rest of the run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class StageCounter:
    items: int = 0
    audio_s: float = 0.0
    busy_s: float = 0.0
    bytes: int = 0
    cpu_s: float = 0.0  # CPU time of the stage's own thread (busy_s is wall time)

    def add(
        self,
        items: int,
        audio_s: float,
        busy_s: float,
        bytes: int = 0,  # noqa: A002
        cpu_s: float = 0.0,
    ) -> None:
        self.items += items
        self.audio_s += audio_s
        self.busy_s += busy_s
        self.bytes += bytes
        self.cpu_s += cpu_s


@dataclass
class TaskCounter:
    ok: int = 0  # rows written to the task's table
    failed: int = 0  # errors rows for the task (its own, or the item's read/decode failure)


@dataclass
class Counters:
    """Totals reported by the sink (what has landed) and per stage (busy time)."""

    items: int = 0
    failed: int = 0
    audio_s: float = 0.0
    bytes: int = 0
    stages: dict[str, StageCounter] = field(default_factory=dict)
    tasks: dict[str, TaskCounter] = field(default_factory=dict)

    def written(
        self,
        items: int,
        failed: int,
        audio_s: float,
        bytes: int,  # noqa: A002
        tasks: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        self.items += items
        self.failed += failed
        self.audio_s += audio_s
        self.bytes += bytes
        for name, (ok, bad) in (tasks or {}).items():
            t = self.tasks.setdefault(name, TaskCounter())
            t.ok += ok
            t.failed += bad

    def stage(
        self,
        name: str,
        items: int,
        audio_s: float,
        busy_s: float,
        bytes: int = 0,  # noqa: A002
        cpu_s: float = 0.0,
    ) -> None:
        self.stages.setdefault(name, StageCounter()).add(items, audio_s, busy_s, bytes, cpu_s)

    def done(self, gate: str | None) -> StageCounter:
        """What has cleared the stage `gate` (the last model stage); without one, what
        has been written."""
        if gate is not None:
            return self.stages.get(gate, StageCounter())
        return StageCounter(self.items, self.audio_s, 0.0, self.bytes)


@dataclass(frozen=True)
class Rate:
    items_s: float
    audio_s: float  # audio seconds per wall second: the realtime factor
    bytes_s: float


class RateMeter:
    """Rates of what is done over the last `window_s` seconds, from the first moment
    anything was done."""

    def __init__(self, window_s: float = 60.0):
        self._window = window_s
        self._points: deque[tuple[float, StageCounter]] = deque()

    def add(self, t: float, done: StageCounter) -> Rate | None:
        """Record `done` at time `t`; the rate so far, None until two points span time."""
        if done.items == 0:
            return None
        self._points.append((t, StageCounter(done.items, done.audio_s, 0.0, done.bytes)))
        while len(self._points) > 2 and t - self._points[1][0] >= self._window:
            self._points.popleft()
        t0, first = self._points[0]
        if t <= t0:
            return None
        span = t - t0
        return Rate(
            (done.items - first.items) / span,
            (done.audio_s - first.audio_s) / span,
            (done.bytes - first.bytes) / span,
        )


def format_line(
    c: Counters,
    elapsed_s: float,
    *,
    total_items: int | None,
    total_bytes: int | None,
    gate: str | None = None,
    rate: Rate | None = None,
) -> str:
    """One line, e.g. `[0:01:23] 1,234/10,000 items (12.3%) | 2.10 h audio | 45.6 items/s |
    95x realtime | ETA 0:09:40 | 1,200 written, 12 errors | stages: decode 1,300 ctc 1,250`.

    Items and audio count what cleared `gate`; rates and the ETA are shown once `rate` is
    known (a rate since the start would count start-up and model load as slowness)."""
    done = c.done(gate)
    fraction = _fraction(done, total_items, total_bytes)
    count = f"{done.items:,}/{total_items:,} items" if total_items else f"{done.items:,} items"
    parts = [
        f"[{_hms(elapsed_s)}] {count}"
        + (f" ({100 * fraction:.1f}%)" if fraction is not None else ""),
        f"{done.audio_s / 3600:.2f} h audio",
    ]
    if rate is not None:
        parts += [f"{rate.items_s:.1f} items/s", f"{rate.audio_s:.0f}x realtime"]
    eta = _eta(done, rate, total_items, total_bytes)
    if eta is not None:
        parts.append(f"ETA {_hms(eta)}")
    parts.append(f"{c.items:,} written, {c.failed:,} errors")
    if c.stages:
        # Items through each stage so far: shows where work is before anything is written.
        parts.append("stages: " + " ".join(f"{name} {s.items:,}" for name, s in c.stages.items()))
    return " | ".join(parts)


def _fraction(done: StageCounter, total_items: int | None, total_bytes: int | None) -> float | None:
    if total_items:
        return min(done.items / total_items, 1.0)
    if total_bytes:
        return min(done.bytes / total_bytes, 1.0)
    return None


def _eta(
    done: StageCounter, rate: Rate | None, total_items: int | None, total_bytes: int | None
) -> float | None:
    if rate is None:
        return None
    if total_items and rate.items_s > 0 and done.items < total_items:
        return (total_items - done.items) / rate.items_s
    if not total_items and total_bytes and rate.bytes_s > 0 and done.bytes < total_bytes:
        return (total_bytes - done.bytes) / rate.bytes_s
    return None


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
