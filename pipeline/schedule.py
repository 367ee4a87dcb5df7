"""A job's schedule: a cron expression in a time zone, validated and expanded.

audiobatch runs no scheduler of its own: the schedule is carried out by the cluster's
(a KubeRay `RayCronJob` or a Kubernetes `CronJob`, `render k8s`) or by cron on one
machine. This module checks the expression the way those will read it and tells the
next run times, so a wrong field is caught by `audiobatch validate`, not at 2 a.m.

Expressions are five-field cron (minute hour day-of-month month day-of-week) with the
Kubernetes CronJob macros (`@hourly`, `@daily`, ...). Parsing and iteration use
`cronsim` (one small module, no dependencies, daylight-saving behaviour matching
Debian's cron, which is what a crontab line gets).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The macros a Kubernetes CronJob accepts (`@reboot` means nothing for a batch job).
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def check_cron(expr: str) -> str:
    """`expr` if it is a valid schedule; ValueError saying what is wrong otherwise."""
    from cronsim import CronSim, CronSimError

    fields = MACROS.get(expr.strip().lower(), expr)
    if len(fields.split()) != 5:
        raise ValueError(
            "a schedule is five cron fields 'minute hour day-of-month month day-of-week' "
            f"(e.g. '0 2 * * *') or one of {', '.join(MACROS)}"
        )
    try:
        CronSim(fields, datetime.now(ZoneInfo("UTC")))
    except CronSimError as exc:
        raise ValueError(f"not a valid cron expression: {exc}") from None
    return expr


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone (Europe/Berlin, UTC); ValueError otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin"
        ) from None
    return name


def next_runs(
    expr: str, timezone: str, n: int = 3, after: datetime | None = None
) -> list[datetime]:
    """The next `n` times `expr` fires in `timezone`, strictly after `after` (default now)."""
    from cronsim import CronSim

    tz = ZoneInfo(timezone)
    start = (after or datetime.now(tz)).astimezone(tz)
    it = CronSim(MACROS.get(expr.strip().lower(), expr), start)
    return [next(it) for _ in range(n)]
