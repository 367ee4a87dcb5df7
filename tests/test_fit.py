import pytest

from pipeline.fit import DoesNotFit, fit_plan
from pipeline.plan import build_plan
from pipeline.spec import parse_spec


def _plan(*tasks: dict):
    specs = [{"kind": "ctc", "name": f"t{i}", "model": "m", **t} for i, t in enumerate(tasks)]
    return build_plan(
        parse_spec({"name": "x", "input": {"uri": "/i"}, "tasks": specs, "output": {"uri": "/o"}})
    )


def _cpus(fit) -> dict[str, float]:
    return {s.name: s.resources.num_cpus for s in fit.plan.stages}


def test_a_plan_that_fits_is_left_as_it_is():
    plan = _plan({})
    fit = fit_plan(plan, {"CPU": 2})
    assert fit.plan == plan and fit.note is None
    assert fit_plan(_plan({"num_cpus": 0.5}, {"num_cpus": 0.5}), {"CPU": 2}).note is None


def test_default_actors_share_what_the_tasks_leave_on_a_cpu_cluster():
    fit = fit_plan(_plan({}, {}), {"CPU": 2})
    assert _cpus(fit) == {"decode": 1, "t0": 0.5, "t1": 0.5, "score": 0.5}
    assert "t0, t1 get 0.5 CPU each" in fit.note and "keep 1" in fit.note
    assert _cpus(fit_plan(_plan({}, {}, {}), {"CPU": 2}))["t2"] == 0.33


def test_explicit_cpus_are_kept_and_the_rest_share():
    fit = fit_plan(_plan({"num_cpus": 1}, {}, {"actors": 2}), {"CPU": 4})
    assert _cpus(fit) == {"decode": 1, "t0": 1, "t1": 0.66, "t2": 0.66, "score": 0.5}
    assert "t1, t2 get 0.66" in fit.note


def test_a_single_cpu_gives_the_tasks_half():
    fit = fit_plan(_plan({}), {"CPU": 1})
    assert _cpus(fit) == {"decode": 0.5, "t0": 0.5, "score": 0.5}


@pytest.mark.parametrize(
    ("tasks", "resources", "match"),
    [
        # explicit requests beyond the cluster stay refused
        (({"num_cpus": 1}, {"num_cpus": 1}), {"CPU": 2}, r"hold 2 CPUs \(t0 1, t1 1\).*has 2"),
        # explicit ones leave nothing for the default one to share
        (({"num_cpus": 1}, {}), {"CPU": 2}, r"hold 2 CPUs"),
        # on a GPU cluster CPU requests are not changed behind the user's back
        (({}, {}), {"CPU": 2, "GPU": 1}, r"hold 2 CPUs"),
        (({"num_cpus": 1, "actors": 3},), {"CPU": 3}, r"hold 3 CPUs \(t0 1 x 3\)"),
    ],
)
def test_what_cannot_fit_is_refused_with_what_to_change(tasks, resources, match):
    with pytest.raises(DoesNotFit, match=match) as info:
        fit_plan(_plan(*tasks), resources)
    assert "lower `num_cpus`" in str(info.value)
