"""Progress of a running job: counters, and the line printed on the terminal.

Plain Python so it is unit-testable; the runner keeps one `Counters` inside a Ray
actor that the sink and the stages report to, and prints `format_line` of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageCounter:
    items: int = 0
    audio_s: float = 0.0
    busy_s: float = 0.0

    def add(self, items: int, audio_s: float, busy_s: float) -> None:
        self.items += items
        self.audio_s += audio_s
        self.busy_s += busy_s


@dataclass
class Counters:
    """Totals reported by the sink (what has landed) and per stage (busy time)."""

    items: int = 0
    failed: int = 0
    audio_s: float = 0.0
    bytes: int = 0
    stages: dict[str, StageCounter] = field(default_factory=dict)

    def written(self, items: int, failed: int, audio_s: float, bytes: int) -> None:  # noqa: A002
        self.items += items
        self.failed += failed
        self.audio_s += audio_s
        self.bytes += bytes

    def stage(self, name: str, items: int, audio_s: float, busy_s: float) -> None:
        self.stages.setdefault(name, StageCounter()).add(items, audio_s, busy_s)


def format_line(
    c: Counters, elapsed_s: float, *, total_items: int | None, total_bytes: int | None
) -> str:
    """One line, e.g. `[0:01:23] 1,234/10,000 items (12.3%) | 2.10 h audio | 45.6 items/s |
    95x realtime | 12 errors | ETA 0:09:40 | stages: decode 1,300 ctc 1,250 score 1,234`.

    Items, audio and errors count what has been written; the rate is since the start."""
    rate = c.items / elapsed_s if elapsed_s > 0 else 0.0
    rtf = c.audio_s / elapsed_s if elapsed_s > 0 else 0.0
    fraction = _fraction(c, total_items, total_bytes)
    count = f"{c.items:,}/{total_items:,} items" if total_items else f"{c.items:,} items"
    parts = [
        f"[{_hms(elapsed_s)}] {count}"
        + (f" ({100 * fraction:.1f}%)" if fraction is not None else ""),
        f"{c.audio_s / 3600:.2f} h audio",
        f"{rate:.1f} items/s",
        f"{rtf:.0f}x realtime",
        f"{c.failed:,} errors",
    ]
    if fraction and 0 < fraction < 1:
        parts.append(f"ETA {_hms(elapsed_s * (1 - fraction) / fraction)}")
    if c.stages:
        # Items through each stage so far: shows where work is before anything is written.
        parts.append("stages: " + " ".join(f"{name} {s.items:,}" for name, s in c.stages.items()))
    return " | ".join(parts)


def _fraction(c: Counters, total_items: int | None, total_bytes: int | None) -> float | None:
    if total_items:
        return min(c.items / total_items, 1.0)
    if total_bytes:
        return min(c.bytes / total_bytes, 1.0)
    return None


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
