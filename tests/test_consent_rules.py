"""The sending rules: consent first, then quiet hours in the recipient's zones, then caps."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from consent.ledger import ConsentState, Status
from consent.rules import (
    QUIET_HOURS_PRESETS,
    Decision,
    FrequencyCap,
    Policy,
    Purpose,
    QuietHours,
    Verdict,
    decide,
    next_allowed,
)

NY = ("America/New_York",)
NOON_NY = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York (EDT)


def state(status: Status, since: datetime | None = None, **kw: object) -> ConsentState:
    return ConsentState("+12125550101", "deals", status,
                        since or datetime(2026, 1, 1, tzinfo=UTC), 1,
                        7 if status is Status.OPTED_IN else None, **kw)  # type: ignore[arg-type]


def run(status: Status, purpose: Purpose = Purpose.MARKETING, at: datetime = NOON_NY,
        zones: tuple[str, ...] = NY, policy: Policy | None = None, **kw: object) -> Decision:
    return decide(state=state(status), purpose=purpose, at=at, zones=zones,
                  policy=policy or Policy(), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "purpose", "verdict", "reason"), [
    (Status.OPTED_IN, Purpose.MARKETING, Verdict.ALLOW, None),
    (Status.NONE, Purpose.MARKETING, Verdict.DENY, "no_consent"),
    (Status.PENDING, Purpose.MARKETING, Verdict.DENY, "pending_confirmation"),
    (Status.OPTED_OUT, Purpose.MARKETING, Verdict.DENY, "opted_out"),
    (Status.NONE, Purpose.TRANSACTIONAL, Verdict.ALLOW, None),
    (Status.OPTED_OUT, Purpose.TRANSACTIONAL, Verdict.DENY, "opted_out"),
    (Status.NONE, Purpose.REPLY, Verdict.ALLOW, None),
    (Status.OPTED_OUT, Purpose.REPLY, Verdict.DENY, "opted_out"),
])
def test_consent_comes_first(status: Status, purpose: Purpose, verdict: Verdict,
                             reason: str | None) -> None:
    decision = run(status, purpose)
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_an_allowed_marketing_message_names_the_opt_in_that_allows_it() -> None:
    assert run(Status.OPTED_IN).opt_in_event_id == 7


def test_an_unconfirmed_double_opt_in_expires() -> None:
    pending = state(Status.PENDING, pending_until=NOON_NY + timedelta(hours=1))
    assert pending.effective(NOON_NY) is Status.PENDING
    assert pending.effective(NOON_NY + timedelta(hours=1)) is Status.NONE
    later = decide(state=pending, purpose=Purpose.MARKETING, at=NOON_NY + timedelta(hours=2),
                   zones=NY, policy=Policy())
    assert later.reason == "no_consent"


def test_quiet_hours_defer_to_the_recipients_morning() -> None:
    early = datetime(2026, 6, 10, 10, 30, tzinfo=UTC)  # 06:30 in New York
    decision = run(Status.OPTED_IN, at=early)
    assert decision.verdict is Verdict.DEFER and decision.reason == "quiet_hours"
    assert decision.not_before == datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # 08:00 EDT
    late = datetime(2026, 6, 11, 1, 30, tzinfo=UTC)  # 21:30 on the 10th in New York
    assert run(Status.OPTED_IN, at=late).not_before == datetime(2026, 6, 11, 12, tzinfo=UTC)
    # Transactional messages are not held by quiet hours.
    assert run(Status.NONE, Purpose.TRANSACTIONAL, at=early).allowed


def test_window_edges() -> None:
    quiet = QUIET_HOURS_PRESETS["default"]
    eight = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # 08:00 EDT
    assert quiet.allows(eight, NY[0])
    assert not quiet.allows(eight - timedelta(microseconds=1), NY[0])
    nine_pm = datetime(2026, 6, 11, 1, 0, tzinfo=UTC)  # 21:00 EDT
    assert not quiet.allows(nine_pm, NY[0])
    assert quiet.allows(nine_pm - timedelta(seconds=1), NY[0])


def test_several_zones_must_all_be_open() -> None:
    # A number that may be in New York or Los Angeles: open only 11:00-21:00 New York time.
    zones = ("America/New_York", "America/Los_Angeles")
    at = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)  # 09:00 NY, 06:00 LA
    assert next_allowed(QUIET_HOURS_PRESETS["default"], at, zones) == datetime(
        2026, 6, 10, 15, 0, tzinfo=UTC)  # 08:00 in LA, 11:00 in NY


def test_zones_that_never_share_a_window_are_refused() -> None:
    zones = ("America/New_York", "Asia/Tokyo")  # 13 hours apart
    narrow = QuietHours(time(9, 0), time(10, 0))
    decision = run(Status.OPTED_IN, zones=zones, policy=Policy(narrow))
    assert (decision.verdict, decision.reason) == (Verdict.DENY, "quiet_hours")


@pytest.mark.parametrize(("at", "expected"), [
    # Spring forward in New York on 2026-03-08: 08:00 local is 12:00 UTC that day …
    (datetime(2026, 3, 8, 11, 30, tzinfo=UTC), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
    # … and 13:00 UTC the day before (EST).
    (datetime(2026, 3, 7, 12, 30, tzinfo=UTC), datetime(2026, 3, 7, 13, 0, tzinfo=UTC)),
    # Fall back on 2026-11-01: 08:00 EST is 13:00 UTC.
    (datetime(2026, 11, 1, 12, 30, tzinfo=UTC), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
])
def test_daylight_saving_transitions(at: datetime, expected: datetime) -> None:
    assert next_allowed(QUIET_HOURS_PRESETS["default"], at, NY) == expected


def test_no_sunday_and_stricter_presets() -> None:
    saturday_night = datetime(2026, 6, 14, 0, 30, tzinfo=UTC)  # Sat 20:30 EDT
    strict = QUIET_HOURS_PRESETS["strict-no-sunday"]
    # After 20:00 on Saturday, and Sunday is closed: Monday 08:00.
    assert next_allowed(strict, saturday_night, NY) == datetime(2026, 6, 15, 12, tzinfo=UTC)
    assert next_allowed(QUIET_HOURS_PRESETS["default"], saturday_night, NY) == saturday_night
    custom = QuietHours(time(9, 30), time(17, 0))
    assert next_allowed(custom, datetime(2026, 6, 10, 13, 0, tzinfo=UTC), NY) == datetime(
        2026, 6, 10, 13, 30, tzinfo=UTC)


def test_tehran_half_hour_offset() -> None:
    at = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)  # 06:30 in Tehran (UTC+3:30)
    assert next_allowed(QUIET_HOURS_PRESETS["default"], at, ("Asia/Tehran",)) == datetime(
        2026, 6, 10, 4, 30, tzinfo=UTC)


def test_frequency_cap_window_edges() -> None:
    cap = FrequencyCap(2, timedelta(days=7))
    sends = [NOON_NY - timedelta(days=6), NOON_NY - timedelta(days=1)]
    policy = Policy(program_cap=cap)
    decision = run(Status.OPTED_IN, policy=policy, program_sends=sends)
    assert (decision.verdict, decision.reason) == (Verdict.DEFER, "frequency_cap")
    assert decision.not_before == NOON_NY + timedelta(days=1)  # when the oldest leaves
    # Exactly one window after the oldest send, that send no longer counts.
    assert run(Status.OPTED_IN, at=NOON_NY + timedelta(days=1), policy=policy,
               program_sends=sends).allowed
    assert run(Status.OPTED_IN, policy=policy, program_sends=sends[1:]).allowed


def test_overall_cap_counts_every_program() -> None:
    policy = Policy(overall_cap=FrequencyCap(3, timedelta(days=7)))
    sends = [NOON_NY - timedelta(hours=h) for h in (1, 2, 3)]
    assert run(Status.OPTED_IN, policy=policy, all_sends=sends).reason == "frequency_cap"
    assert run(Status.OPTED_IN, policy=policy, all_sends=sends[:2]).allowed


def test_erased_numbers_stay_suppressed_until_a_newer_opt_in() -> None:
    erased_at = NOON_NY - timedelta(days=1)
    old_opt_in = decide(state=state(Status.OPTED_IN, since=erased_at - timedelta(days=30)),
                        purpose=Purpose.TRANSACTIONAL, at=NOON_NY, zones=NY, policy=Policy(),
                        suppressed_since=erased_at)
    assert (old_opt_in.verdict, old_opt_in.reason) == (Verdict.DENY, "opted_out")
    new_opt_in = decide(state=state(Status.OPTED_IN, since=erased_at + timedelta(hours=1)),
                        purpose=Purpose.MARKETING, at=NOON_NY, zones=NY, policy=Policy(),
                        suppressed_since=erased_at)
    assert new_opt_in.allowed
