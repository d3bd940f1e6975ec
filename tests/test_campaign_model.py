"""Campaign definitions and schedules, without a server: the time arithmetic above all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns import parse_schedule, parse_spec
from gateway.config import Config
from gateway.errors import BadRequest


def test_cron_keeps_local_time_across_daylight_saving(config: Config) -> None:
    schedule = parse_schedule({"cron": "0 10 * * SUN", "time_zone": "Europe/Paris"})
    before = schedule.first_run(datetime(2026, 10, 20, tzinfo=UTC))
    assert before == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)  # the day CEST ends: 10:00 CET
    after = schedule.next_after(before)  # type: ignore[arg-type]
    assert after == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    summer = schedule.first_run(datetime(2026, 3, 23, tzinfo=UTC))
    assert summer == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)  # the day CEST starts: 10:00 CEST


def test_cron_stops_after_until() -> None:
    schedule = parse_schedule({"cron": "0 9 * * *", "time_zone": "UTC",
                               "until": "2026-12-02T00:00:00Z"})
    first = schedule.first_run(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    assert first == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert schedule.next_after(first) is None  # type: ignore[arg-type]


def test_local_time_is_each_recipients_own_and_the_latest_of_several_zones() -> None:
    schedule = parse_schedule({"local_time": "10:00", "date": "2026-12-05"})
    assert schedule.first_run(datetime(2026, 12, 1, tzinfo=UTC)) == datetime(
        2026, 12, 4, 20, 0, tzinfo=UTC)  # 10:00 where the day starts first (UTC+14)
    assert schedule.local_start(("Asia/Tokyo",)) == datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    us = schedule.local_start(("America/New_York", "America/Los_Angeles"))
    assert us == datetime(2026, 12, 5, 18, 0, tzinfo=UTC)  # 10:00 in LA, the later one


@pytest.mark.parametrize(("raw", "words"), [
    ({}, "schedule: an object"),
    ({"now": True, "at": "2026-12-01T10:00:00Z"}, "exactly one of"),
    ({"now": False}, "schedule.now: true"),
    ({"cron": "0 10 * *"}, "schedule.cron"),
    ({"cron": "0 10 * * *", "time_zone": "Mars/Olympus"}, "unknown time zone"),
    ({"local_time": "25:00", "date": "2026-12-05"}, "HH:MM"),
    ({"local_time": "10:00"}, "schedule.date"),
    ({"at": "2026-12-01T10:00:00Z", "until": "2027-01-01"}, "schedule.until: not used"),
])
def test_schedule_mistakes_are_named(raw: dict[str, object], words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_schedule(raw)
    assert words in str(caught.value)


def test_a_naive_time_takes_the_schedules_zone() -> None:
    schedule = parse_schedule({"at": "2026-12-01T10:00:00", "time_zone": "America/New_York"})
    assert schedule.at == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def test_ab_cutoffs_and_stored_form_round_trip(config: Config) -> None:
    payload = {"name": "AB", "program": "deals", "variants": [
        {"name": "a", "template": "A {first_name|x}", "percent": 25},
        {"name": "b", "template": "B {attributes.city|y}", "percent": 75}],
        "audience": {"tag": "vip"}, "schedule": {"now": True}}
    spec = parse_spec(payload, config)
    assert spec.cutoffs == [25, 100]
    assert parse_spec(spec.to_dict(), config) == spec


@pytest.mark.parametrize(("payload", "words"), [
    ({"kind": "pull", "template": "x"}, "keywords: a non-empty list"),
    ({"kind": "pull", "template": "x", "keywords": ["SALE"], "starts_at": "2026-12-02T00:00Z",
      "ends_at": "2026-12-01T00:00Z"}, "ends_at: must be after starts_at"),
    ({"kind": "pull", "template": "x", "keywords": ["SALE"], "outside_reply": "{nope}"},
     "outside_reply: unknown field {nope}"),
    ({"template": "Your code {code}"}, "unknown field {code}"),  # codes are for pull only
    ({"kind": "pull", "template": "x", "keywords": ["SALE"], "audience": {"tag": "a"}},
     "audience: not a field of a pull campaign"),
    ({"template": "x", "validity_minutes": 0}, "validity_minutes"),
    ({"template": "x", "name": ""}, "name: required"),
])
def test_definition_mistakes_are_named(config: Config, payload: dict[str, object],
                                       words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_spec({"name": "n", "program": "deals", **payload}, config)
    assert words in str(caught.value)
