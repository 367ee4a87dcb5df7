"""Outputs with many small files, and a reader that checks counts while compaction runs."""

from __future__ import annotations

import threading

from pipeline.query import connect
from tests.query.outputs import at, item, write_run

TASKS = ("ctc", "whisper")
COUNTS = (
    "SELECT task, count(*), count(DISTINCT item_id) FROM transcripts GROUP BY task ORDER BY task"
)


def many_runs(fs, root: str, runs: int, items: int = 4) -> list[tuple]:
    """`runs` runs of `items` new items each (one file per task and run, plus an errors row
    each); the counts a reader must see: (task, rows, distinct items) per task."""
    for r in range(runs):
        rows = [
            item(f"r{r}-{k}", ctc={"ref_words": 2}, whisper={"ref_words": 3}) for k in range(items)
        ]
        rows.append(item(f"r{r}-bad", error="empty"))
        write_run(
            fs, root, f"20261130T{r // 60:02d}{r % 60:02d}00Z-r{r}", at(r % 24), rows, tasks=TASKS
        )
    return [(t, runs * items, runs * items) for t in TASKS]


class Reader(threading.Thread):
    """Queries the counts in a loop until stopped: through a fresh `connect` each time, and
    through one connection made before compaction began (`keep`), which must stay right
    for the grace period. Every answer that differs from `expected` is kept."""

    def __init__(self, uri: str, expected: list[tuple], storage=None, errors: int | None = None):
        super().__init__(daemon=True)
        self.uri, self.storage, self.expected, self.errors = uri, storage, expected, errors
        self.keep = connect(uri, storage)
        self.stop, self.lock = threading.Event(), threading.Lock()
        self.queries, self.kept_queries, self.wrong, self.failures = 0, 0, [], []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._check(connect(self.uri, self.storage))
                with self.lock:
                    if self.keep is not None:
                        self._check(self.keep)
                        self.kept_queries += 1
            except Exception as exc:  # kept, and the test fails on it
                self.failures.append(repr(exc))

    def settle(self, more: int = 2, timeout_s: float = 120.0) -> None:
        """Wait until `more` further queries have run (a loaded machine runs them slowly)."""
        import time

        target, deadline = self.queries + more, time.monotonic() + timeout_s
        while self.queries < target and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.05)

    def retire_keep(self) -> None:
        """Stop using the early connection: past the grace period it may miss rows (the
        files it reads get deleted), as documented."""
        with self.lock:
            self.keep = None

    def _check(self, con) -> None:
        got = con.execute(COUNTS).fetchall()
        errors = con.execute("SELECT count(*), count(DISTINCT item_id) FROM errors").fetchone()
        self.queries += 1
        if got != self.expected or (self.errors is not None and errors != (self.errors,) * 2):
            self.wrong.append((got, errors))

    def finish(self) -> Reader:
        self.stop.set()
        self.join(timeout=120)
        return self
