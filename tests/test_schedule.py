from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from pipeline.errors import SpecError
from pipeline.schedule import check_cron, check_timezone, next_runs
from pipeline.spec import parse_spec

BASE = {
    "name": "nightly",
    "input": {"uri": "/data"},
    "tasks": [{"kind": "ctc", "model": "m"}],
    "output": {"uri": "/out"},
}


def test_next_runs_follow_the_time_zone_across_a_dst_change():
    # Europe/Berlin leaves summer time on 2026-10-25: 02:30 local is 00:30 UTC before, 01:30 after.
    after = datetime(2026, 10, 23, 12, 0, tzinfo=ZoneInfo("UTC"))
    runs = next_runs("30 2 * * *", "Europe/Berlin", after=after)
    assert [t.strftime("%m-%d %H:%M") for t in runs] == [
        "10-24 02:30",
        "10-25 02:30",
        "10-26 02:30",
    ]
    utc = [t.astimezone(ZoneInfo("UTC")).strftime("%H:%M") for t in runs]
    assert utc[0] == "00:30" and utc[2] == "01:30"


def test_macros_and_day_of_week_fields():
    after = datetime(2026, 12, 1, 23, 0, tzinfo=ZoneInfo("UTC"))  # a Tuesday
    assert next_runs("@daily", "UTC", n=1, after=after)[0] == datetime(
        2026, 12, 2, tzinfo=ZoneInfo("UTC")
    )
    weekdays = next_runs("0 3 * * 1-5", "UTC", n=4, after=after)
    assert [t.strftime("%a") for t in weekdays] == ["Wed", "Thu", "Fri", "Mon"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 25 * * *", "Bad hour"),
        ("61 * * * *", "Bad minute"),
        ("0 2 * *", "five cron fields"),
        ("@reboot", "five cron fields"),
        ("every night", "five cron fields"),
    ],
)
def test_invalid_cron_is_refused_saying_why(expr, message):
    with pytest.raises(ValueError, match=message):
        check_cron(expr)


def test_unknown_time_zone_is_refused():
    assert check_timezone("America/New_York") == "America/New_York"
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        check_timezone("Mars/Olympus")


def test_spec_names_the_bad_schedule_and_timezone_fields():
    assert parse_spec({**BASE, "schedule": "0 2 * * *"}).timezone == "UTC"
    with pytest.raises(SpecError) as err:
        parse_spec({**BASE, "schedule": "0 2 * * 8", "timezone": "Nowhere/City"})
    text = str(err.value)
    assert "  schedule: " in text and "Bad day-of-week" in text
    assert "  timezone: " in text and "Nowhere/City" in text
