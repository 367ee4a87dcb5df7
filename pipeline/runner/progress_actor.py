"""The Ray side of progress: an actor holding `Counters`, and a thread printing them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import ray

from pipeline.progress import Counters, RateMeter, format_line


@ray.remote(num_cpus=0)
class ProgressActor:
    def __init__(self) -> None:
        self.c = Counters()

    def written(self, stats: dict) -> None:
        self.c.written(**stats)

    def stage(
        self,
        name: str,
        items: int,
        audio_s: float,
        busy_s: float,
        bytes: int = 0,  # noqa: A002
        cpu_s: float = 0.0,
    ) -> None:
        self.c.stage(name, items, audio_s, busy_s, bytes, cpu_s)

    def snapshot(self) -> Counters:
        return self.c


class ProgressPrinter:
    """Prints a progress line every `interval_s` until stopped (and once more at the end);
    items count as done when they clear the stage `gate` (the last model stage)."""

    def __init__(
        self,
        actor,
        *,
        total_items: int | None,
        total_bytes: int | None,
        gate: str | None,
        interval_s: float,
        out: Callable[[str], None],
        on_tick: Callable[[Counters], None] | None = None,
    ):
        self._actor, self._out, self._interval = actor, out, interval_s
        self._on_tick = on_tick  # e.g. keeping the run's stand-in runs row current
        self._totals = {"total_items": total_items, "total_bytes": total_bytes, "gate": gate}
        self._gate = gate
        self._meter = RateMeter()
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="audiobatch-progress", daemon=True)

    def start(self) -> ProgressPrinter:
        self._thread.start()
        return self

    def stop(self) -> Counters:
        self._stop.set()
        self._thread.join(timeout=5)
        counters = ray.get(self._actor.snapshot.remote())
        self._print(counters)
        return counters

    def _print(self, counters: Counters) -> None:
        now = time.monotonic()
        rate = self._meter.add(now, counters.done(self._gate))
        self._out(format_line(counters, now - self._start, rate=rate, **self._totals))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                counters = ray.get(self._actor.snapshot.remote(), timeout=10)
            except Exception:  # progress must never break the job
                continue
            self._print(counters)
            if self._on_tick is not None:
                try:
                    self._on_tick(counters)
                except Exception:  # nor may what is done with it
                    continue
