import pytest

from pipeline.plan import build_plan
from pipeline.runner import RunFailed, _check_fits
from pipeline.spec import parse_spec


def _plan(*cpus):
    tasks = [
        {"kind": "ctc", "name": f"t{i}", "model": "m", "num_cpus": c} for i, c in enumerate(cpus)
    ]
    return build_plan(
        parse_spec({"name": "x", "input": {"uri": "/i"}, "tasks": tasks, "output": {"uri": "/o"}})
    )


def test_actor_pools_must_leave_a_cpu_for_the_task_stages():
    _check_fits(_plan(1), {"CPU": 2})
    _check_fits(_plan(0.5, 0.5), {"CPU": 2})
    with pytest.raises(RunFailed, match=r"hold 2 CPUs \(t0 1, t1 1\).*cluster has 2"):
        _check_fits(_plan(1, 1), {"CPU": 2})
