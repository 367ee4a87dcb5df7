"""What a run prints of Ray's own output: our progress and summary, and Ray's lines
only where they concern the user, unless `--verbose` asks for everything.

Quietened by default (each was seen on demo runs, and none asks the user to do
anything): the token-authentication notice (auth stays on); Ray Data's "progress bars
disabled" (we print our own progress); its "no available CPUs" and "not enough to run
any task from <op>, the job may hang" (the model actors hold CPUs by design, and
`pipeline/fit.py` leaves the task stages theirs, so they only wait their turn);
its warnings that a pool's concurrency bounds exceed a small job's inputs (the decode
pool's cap only keeps it unfused, see the runner; an actor pool may get no input on a
re-run); the core worker's notice that actors have
constructor arguments in the object store (Ray Data's own; ray-project/ray#53727);
and C decoder libraries' complaints about a damaged file on a worker's stderr
(libmpg123, ffmpeg): that item's failure, if it is one, is in the errors table.
Every other worker line and every other Ray warning still reaches the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

# Logger names and message starts of the notices above (Ray 2.60).
QUIET_RECORDS = {
    "ray._private.authentication.authentication_token_setup": "Token authentication is",
    "ray.data._internal.progress": "Progress bars",
    "ray.data.dataset": "Warning: The Ray cluster currently does not have any available CPUs",
    "ray.data._internal.execution.resource_manager": "Cluster resources are not enough to run",
}
QUIET_WARNINGS = r"The (maximum|minimum) number of concurrent (tasks|actors) for 'MapBatches"
RESTART_NOTICE = re.compile(
    r"core_worker\.cc:\d+: Actor .*has constructor arguments in the object store"
)

# Lines C libraries print on a worker's stderr about a damaged stream.
DECODER_NOISE = re.compile(r"^\s*\[(src/libmpg123/|\w+ @ 0x[0-9a-f]+\])")


def configure(verbose: bool) -> None:
    """Set Ray's driver-side log levels and filters; call before `ray.init`."""
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.WARNING)
    for name, start in QUIET_RECORDS.items():
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _DropStart)]:
            logger.removeFilter(f)
        if not verbose:
            logger.addFilter(_DropStart(start))
    if not verbose:
        warnings.filterwarnings("ignore", message=QUIET_WARNINGS, category=UserWarning)


class _DropStart(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self._start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self._start)


_notice_spent = False


def spend_restart_notice() -> None:
    """Spend the core worker's once-per-process notice that an actor has constructor
    arguments in the object store, which every Ray Data actor pool triggers (its
    context and transform are object refs; ray-project/ray#53727): create one such
    actor with this process's stderr captured, then print what was captured but it."""
    global _notice_spent
    if _notice_spent:
        return
    _notice_spent = True
    import ray

    @ray.remote(num_cpus=0, max_restarts=1)
    class _Probe:
        def __init__(self, _arg):
            pass

    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            probe = _Probe.remote(ray.put(b""))
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        ray.kill(probe)
        captured.seek(0)
        kept = [
            ln
            for ln in captured.read().decode(errors="replace").splitlines(True)
            if not RESTART_NOTICE.search(ln)
        ]
    sys.stderr.write("".join(kept))


def filter_worker_lines() -> None:
    """Drop decoder-library noise from the worker output Ray forwards to this driver;
    call after `ray.init`.

    Ray has no public hook for this: wrap the handler `ray.init` registers on its
    stdstream dispatcher. If a Ray version lacks it, every line is printed as before."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return
    handlers = getattr(dispatcher, "handlers", None)
    if not isinstance(handlers, list):
        return
    wrapped = [
        (name, h if name != "ray_print_logs" or isinstance(h, _Filtered) else _Filtered(h))
        for name, h in handlers
    ]
    with getattr(dispatcher, "_lock", None) or contextlib.nullcontext():
        dispatcher.handlers = wrapped


def keep_line(line: str) -> bool:
    return not DECODER_NOISE.match(line)


class _Filtered:
    def __init__(self, printer):
        self._printer = printer

    def __call__(self, data: dict) -> None:
        lines = [line for line in data.get("lines", []) if keep_line(line)]
        if lines:
            self._printer({**data, "lines": lines})
