"""Fitting a plan's CPU requests to the cluster it runs on.

Each model actor holds its CPUs for the whole run. If the actor pools take every CPU,
Ray never schedules the read, decode and write tasks and waits forever instead of
failing, so a plan must leave the task stages at least one task's worth of CPU.

On a cluster without GPUs (a laptop, a small CPU cluster) the default of one CPU per
actor would refuse a user's first two-model job on two cores. There, the actors whose
spec left `num_cpus` at its default share what the task stages leave, and the choice
is printed (a CPU actor's torch threads still follow `cpu_threads`; without it Ray
gives a fractional reservation one thread). A spec that asks, explicitly, for more than the
cluster has, and any plan on a GPU cluster, is refused with what to change.

Plain Python over the plan and a resources dict (`ray.cluster_resources()`), so it is
unit-tested without Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from pipeline.errors import AudiobatchError
from pipeline.plan import Plan, StagePlan

# Below this an actor gets too little of a core for Ray's scheduler to mean anything.
MIN_ACTOR_CPUS = 0.05


class DoesNotFit(AudiobatchError):
    """The plan's actor pools and task stages need more CPUs than the cluster has."""


@dataclass(frozen=True)
class Fit:
    plan: Plan
    note: str | None  # what was changed, for the user; None when nothing was


def fit_plan(plan: Plan, resources: dict) -> Fit:
    """`plan` with CPU requests the cluster can schedule, or `DoesNotFit`."""
    cpus = float(resources.get("CPU", 0))
    actors = [s for s in plan.stages if s.resources.actor]
    tasks = [s for s in plan.stages if not s.resources.actor]
    task_need = max([1.0] + [s.resources.num_cpus for s in tasks])
    if _actor_cpus(actors) + task_need <= cpus:
        return Fit(plan, None)
    flexible = [s for s in actors if not s.resources.cpus_from_spec]
    if resources.get("GPU", 0) > 0 or not flexible:
        raise DoesNotFit(_refusal(actors, task_need, cpus))
    # Leave the task stages one task's worth, or half the cluster when it has under 2 CPUs.
    task_cpus = min(task_need, cpus / 2)
    fixed = _actor_cpus([s for s in actors if s.resources.cpus_from_spec])
    copies = sum(s.resources.max_actors for s in flexible)
    share = math.floor(100 * (cpus - task_cpus - fixed) / copies) / 100
    if share < MIN_ACTOR_CPUS:
        raise DoesNotFit(_refusal(actors, task_need, cpus))
    stages = [_refit(s, share, task_cpus) for s in plan.stages]
    return Fit(replace(plan, stages=stages), _note(flexible, share, task_cpus, cpus))


def _actor_cpus(actors: list[StagePlan]) -> float:
    return sum(s.resources.num_cpus * s.resources.max_actors for s in actors)


def _refit(stage: StagePlan, share: float, task_cpus: float) -> StagePlan:
    r = stage.resources
    if r.actor and not r.cpus_from_spec:
        return replace(stage, resources=replace(r, num_cpus=min(r.num_cpus, share)))
    if not r.actor and r.num_cpus > task_cpus:
        return replace(stage, resources=replace(r, num_cpus=task_cpus))
    return stage


def _note(flexible: list[StagePlan], share: float, task_cpus: float, cpus: float) -> str:
    names = ", ".join(s.name for s in flexible)
    return (
        f"the cluster has {cpus:g} CPUs and no GPU: model actors {names} get {share:g} CPU each "
        f"so read/decode/write tasks keep {task_cpus:g}; set `num_cpus` on a task to choose"
    )


def _refusal(actors: list[StagePlan], task_need: float, cpus: float) -> str:
    pools = ", ".join(
        f"{s.name} {s.resources.num_cpus:g}"
        + (f" x {s.resources.max_actors}" if s.resources.max_actors > 1 else "")
        for s in actors
    )
    return (
        f"the model actors hold {_actor_cpus(actors):g} CPUs ({pools}) and the read/decode/write "
        f"tasks need at least {task_need:g} more, but the cluster has {cpus:g}: lower `num_cpus` "
        "of the tasks (e.g. 0.5; `cpu_threads` still sets their torch threads) or add CPUs"
    )
