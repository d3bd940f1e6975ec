"""Whether a message may go now: consent, quiet hours in the recipient's time, frequency caps.

``decide`` is pure (all facts passed in) so every rule is testable with a frozen clock;
``ConsentRules.decide`` gathers the facts from the database and asks it. Every sender asks
right before sending, never earlier: an opt-out since queuing must win.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from consent.ledger import ConsentLedger, ConsentState, Status
from gateway.db import Database, Tx
from gateway.db import consent as sql
from gateway.db.profiles import get_many as get_profiles
from gateway.db.profiles import suppressed_many
from gateway.profiles import Profile, derived_time_zones


class Purpose(enum.StrEnum):
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"
    REPLY = "reply"


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"  # never, as things stand: do not retry
    DEFER = "defer"  # not now: try again at `not_before`


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str | None = None  # no_consent, pending_confirmation, opted_out, quiet_hours …
    not_before: datetime | None = None
    #: For an allowed marketing message: the opt-in event that allows it (audit trail).
    opt_in_event_id: int | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


ALLOW = Decision(Verdict.ALLOW)


@dataclass(frozen=True)
class QuietHours:
    """Send only from `start` to `end` local time (and never on Sunday, if so set)."""

    start: time = time(8, 0)
    end: time = time(21, 0)
    no_sunday: bool = False

    def allows(self, at: datetime, zone: str) -> bool:
        local = at.astimezone(ZoneInfo(zone))
        if self.no_sunday and local.weekday() == 6:
            return False
        return self.start <= local.time().replace(tzinfo=None) < self.end

    def openings(self, at: datetime, zone: str, days: int = 9) -> list[datetime]:
        """The instants (UTC) at which the window opens in `zone`, from `at`'s day on."""
        tz = ZoneInfo(zone)
        first: date = at.astimezone(tz).date()
        out = []
        for n in range(days):
            local = datetime.combine(first + timedelta(days=n), self.start, tzinfo=tz)
            out.append(local.astimezone(UTC))
        return out


#: Presets for the stricter rules some programs follow.
QUIET_HOURS_PRESETS = {
    "default": QuietHours(time(8, 0), time(21, 0)),  # TCPA: 8 a.m. to 9 p.m.
    "strict": QuietHours(time(8, 0), time(20, 0)),  # several US states: 8 a.m. to 8 p.m.
    "strict-no-sunday": QuietHours(time(8, 0), time(20, 0), no_sunday=True),
    "always": QuietHours(time(0, 0), time(23, 59, 59, 999999)),
}


def next_allowed(quiet: QuietHours, at: datetime, zones: Sequence[str]) -> datetime | None:
    """`at` if the window holds in every zone now, else the first instant it does (None if
    the zones never share an open window, e.g. 08–20 across eleven time zones)."""
    if all(quiet.allows(at, z) for z in zones):
        return at
    candidates = sorted({c for z in zones for c in quiet.openings(at, z) if c > at})
    return next((c for c in candidates if all(quiet.allows(c, z) for z in zones)), None)


@dataclass(frozen=True)
class FrequencyCap:
    """At most `max_messages` marketing messages per rolling `window`."""

    max_messages: int
    window: timedelta

    def next_allowed(self, at: datetime, sent: Sequence[datetime]) -> datetime:
        recent = sorted(t for t in sent if at - self.window < t <= at)
        if len(recent) < self.max_messages:
            return at
        # The oldest send that must leave the window before one more fits.
        return recent[len(recent) - self.max_messages] + self.window


@dataclass(frozen=True)
class Policy:
    """The sending rules of one program (and the overall cap across programs)."""

    quiet_hours: QuietHours = QUIET_HOURS_PRESETS["default"]
    program_cap: FrequencyCap | None = None
    overall_cap: FrequencyCap | None = None


def decide(*, state: ConsentState, purpose: Purpose, at: datetime, zones: Sequence[str],
           policy: Policy, program_sends: Sequence[datetime] = (),
           all_sends: Sequence[datetime] = (), suppressed_since: datetime | None = None
           ) -> Decision:
    """The rules of the consent issue, in order: consent, then quiet hours, then caps."""
    status = state.effective(at)
    if status is Status.OPTED_OUT:
        return Decision(Verdict.DENY, "opted_out")
    if suppressed_since is not None and not (
            status is Status.OPTED_IN and state.since and state.since > suppressed_since):
        return Decision(Verdict.DENY, "opted_out")  # erased: only a newer opt-in reopens
    if purpose is not Purpose.MARKETING:
        return ALLOW
    if status is Status.PENDING:
        return Decision(Verdict.DENY, "pending_confirmation")
    if status is not Status.OPTED_IN:
        return Decision(Verdict.DENY, "no_consent")
    if zones:
        when = next_allowed(policy.quiet_hours, at, zones)
        if when is None:
            return Decision(Verdict.DENY, "quiet_hours")
        if when > at:
            return Decision(Verdict.DEFER, "quiet_hours", when)
    for cap, sent in ((policy.program_cap, program_sends), (policy.overall_cap, all_sends)):
        if cap is not None:
            when = cap.next_allowed(at, sent)
            if when > at:
                return Decision(Verdict.DEFER, "frequency_cap", when)
    return Decision(Verdict.ALLOW, opt_in_event_id=state.opt_in_event_id)


class ConsentRules:
    """`decide(phone, program, purpose, at)` with the facts read from the database."""

    def __init__(self, ledger: ConsentLedger, policies: dict[str, Policy]) -> None:
        self.ledger, self.policies = ledger, policies

    async def decide(self, db: Database | Tx, phone: str, program_id: str, purpose: Purpose,
                     at: datetime) -> Decision:
        return (await self.decide_many(db, [(phone, program_id, purpose)], at))[0]

    async def decide_many(self, db: Database | Tx, items: Sequence[tuple[str, str, Purpose]],
                          at: datetime) -> list[Decision]:
        """`decide` for a batch of (phone, program, purpose), reading each kind of fact once
        for the whole batch (the dispatcher asks for hundreds at a time). Messages earlier in
        the batch count against the caps of later ones."""
        phones = sorted({phone for phone, _, _ in items})
        if not phones:
            return []
        states = {(r["phone"], r["program_id"]): ConsentState.from_row(r)
                  for r in await sql.statuses_many(db, phones)}
        profiles = {r["phone"]: Profile.from_row(r) for r in await get_profiles(db, phones)}
        suppressed = await suppressed_many(db, phones)
        windows = [c.window for p in self.policies.values()
                   for c in (p.program_cap, p.overall_cap) if c]
        sends: dict[str, list[tuple[str | None, datetime]]] = {}
        if windows and any(purpose is Purpose.MARKETING for _, _, purpose in items):
            for row in await sql.marketing_sends_many(db, phones, at - max(windows)):
                sends.setdefault(row[0], []).append((row[1], datetime.fromisoformat(row[2])))
        decisions = []
        for phone, program_id, purpose in items:
            policy = self.policies.get(program_id)
            if policy is None:
                raise KeyError(f"unknown program {program_id!r}")
            profile = profiles.get(phone)
            past = sends.get(phone, [])
            zones: Sequence[str] = ()
            if purpose is Purpose.MARKETING:  # quiet hours concern marketing only
                zones = (profile.effective_time_zones if profile
                         else derived_time_zones(phone))
            decision = decide(
                state=states.get((phone, program_id)) or ConsentState(phone, program_id),
                purpose=purpose, at=at, policy=policy, zones=zones,
                program_sends=[t for p, t in past if p == program_id],
                all_sends=[t for _, t in past], suppressed_since=suppressed.get(phone))
            if decision.allowed and purpose is Purpose.MARKETING:
                sends.setdefault(phone, []).append((program_id, at))
            decisions.append(decision)
        return decisions
