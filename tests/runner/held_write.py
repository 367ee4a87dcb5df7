"""A test driver: `audiobatch` whose one write task stops between writing its files and
committing its checkpoint, so a test can kill the driver exactly while that checkpoint
is pending (README "Reliability", R4).

    python -m tests.runner.held_write HOLD_DIR TASK_INDEX run SPEC --address ADDRESS

It swaps the runner's sink (in `pipeline.runner.execute`) for `HeldDatasink` and then
runs the CLI unchanged. The write task whose index is TASK_INDEX writes its table and
completion files as usual (Ray has written its pending checkpoint before them), writes
its base name to HOLD_DIR/held, and then waits for the driver to die instead of returning, so Ray never commits it. It ends
by raising, never by returning (and so never commits), once the driver is gone or after
`HOLD_S`. Nothing of this is in the package: the swap happens only in this process, and
the class travels to the workers by value (it is defined in `__main__`).
"""

from __future__ import annotations

import os
import sys
import time

from ray.data._internal.planner.plan_write_op import WRITE_UUID_KWARG_NAME
from ray.data.datasource.filename_provider import _split_base_and_ext

from pipeline.runner.datasink import TablesDatasink

HOLD_S = 300.0  # the longest a held write waits for the driver's death


class HeldDatasink(TablesDatasink):
    """`TablesDatasink` whose write task `hold_task` stops after its files, uncommitted."""

    hold_dir = ""  # set by main() before the runner builds the sink
    hold_task = -1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._hold = (type(self).hold_dir, type(self).hold_task, os.getpid())

    def write_block(self, block, block_index: int, ctx) -> None:
        super().write_block(block, block_index, ctx)
        folder, task, driver = self._hold
        if ctx.task_idx != task:
            return
        name = self.filename_provider.get_filename_for_task(
            ctx.kwargs[WRITE_UUID_KWARG_NAME], ctx.task_idx
        )
        with open(os.path.join(folder, "held"), "x") as f:  # once, even if Ray retries
            f.write(_split_base_and_ext(name)[0])
        deadline = time.monotonic() + HOLD_S
        while _alive(driver) and time.monotonic() < deadline:
            time.sleep(0.1)
        raise RuntimeError("held write: the driver was not killed; this write stays pending")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    import pipeline.runner.execute as runner
    from pipeline.cli import main as cli

    HeldDatasink.hold_dir, HeldDatasink.hold_task = argv[0], int(argv[1])
    runner.TablesDatasink = HeldDatasink
    return cli(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
