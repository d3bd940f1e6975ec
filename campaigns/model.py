"""What a campaign is, checked when it is saved: a mistake is a 400 naming the field, never a
surprise at send time.

A definition is plain JSON (the API's body, or a TOML file for the CLI)::

    {"name": "Spring sale", "program": "deals", "kind": "push",
     "template": "Hi {first_name|there}, 20% off this week",   # or "variants": [...]
     "audience": {"tag": "vip"},                                 # a segment; optional
     "schedule": {"at": "2026-12-01T10:00:00+01:00"}}            # optional until scheduled

Pull campaigns add ``keywords``, ``starts_at``/``ends_at``, ``outside_reply``, ``join``,
``exhausted_reply`` (and a coupon pool uploaded separately).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from gateway.clock import EARLIEST, LATEST, within_range
from gateway.config import Config
from gateway.db.profiles import FIELDS
from gateway.db.segments import compile_segment
from gateway.errors import BadRequest
from gateway.templates import malformed, placeholders
from gateway.text import normalise, words

KINDS = ("push", "pull")
STATUSES = ("draft", "scheduled", "running", "paused", "completed", "cancelled")
#: Fields a template may use besides ``attributes.<name>``.
TEMPLATE_FIELDS = frozenset({*FIELDS, "phone"})
_COMMON = {"name", "program", "kind", "template", "variants", "validity_minutes"}
_PUSH = {"audience", "schedule"}
_PULL = {"keywords", "starts_at", "ends_at", "outside_reply", "join", "exhausted_reply"}
_ATTRIBUTE = re.compile(r"^attributes\.[A-Za-z_][A-Za-z0-9_]{0,63}$")
_LOCAL_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_NAME = 200


@dataclass(frozen=True)
class Variant:
    name: str
    template: str
    percent: int


@dataclass(frozen=True)
class Schedule:
    """One of: now, at an instant, recurring (cron in a time zone), or a local time of day
    on a date in each recipient's own time zone."""

    kind: str  # now, at, cron, local_time
    at: datetime | None = None
    cron: str = ""
    time_zone: str = "UTC"
    until: datetime | None = None
    local_time: time | None = None
    day: date | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "now":
            return {"now": True}
        if self.kind == "at":
            assert self.at is not None
            return {"at": self.at.isoformat()}
        if self.kind == "cron":
            out: dict[str, Any] = {"cron": self.cron, "time_zone": self.time_zone}
            if self.until:
                out["until"] = self.until.isoformat()
            return out
        assert self.local_time is not None and self.day is not None
        return {"local_time": self.local_time.strftime("%H:%M"), "date": self.day.isoformat(),
                "time_zone": self.time_zone}

    def first_run(self, now: datetime) -> datetime | None:
        """When the first run is due (None: never, e.g. a cron past its `until`)."""
        if self.kind == "now":
            return now
        if self.kind == "at":
            return self.at
        if self.kind == "cron":
            return self.next_after(now - timedelta(microseconds=1))
        assert self.local_time is not None and self.day is not None
        # The earliest zone on Earth (UTC+14) reaches the local time first.
        return datetime.combine(self.day, self.local_time, tzinfo=UTC) - timedelta(hours=14)

    def next_after(self, previous: datetime) -> datetime | None:
        """The next run of a recurring schedule strictly after `previous`."""
        if self.kind != "cron":
            return None
        trigger = CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(self.time_zone))
        after = previous + timedelta(seconds=1)
        found = trigger.get_next_fire_time(None, after.replace(microsecond=0))
        if found is None or (self.until is not None and found > self.until):
            return None
        return found.astimezone(UTC)

    def local_start(self, zones: tuple[str, ...]) -> datetime | None:
        """For a local-time schedule: when a recipient in `zones` gets the message (the
        latest of their zones, so it is not early anywhere they may be)."""
        if self.kind != "local_time":
            return None
        assert self.local_time is not None and self.day is not None
        return max(datetime.combine(self.day, self.local_time, tzinfo=ZoneInfo(z))
                   for z in (zones or (self.time_zone,))).astimezone(UTC)


@dataclass(frozen=True)
class Spec:
    """A validated definition."""

    name: str
    program_id: str
    kind: str
    variants: tuple[Variant, ...]
    audience: dict[str, Any] | None = None
    schedule: Schedule | None = None
    validity: timedelta | None = None
    keywords: tuple[str, ...] = ()
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    outside_reply: str = ""
    join: bool = False
    exhausted_reply: str = ""

    @property
    def cutoffs(self) -> list[int]:
        """Cumulative percentages: variant i takes the buckets below cutoffs[i]."""
        out, total = [], 0
        for v in self.variants:
            total += v.percent
            out.append(total)
        return out

    def uses_code(self) -> bool:
        return any("code" in placeholders(v.template) for v in self.variants)

    def in_window(self, at: datetime) -> bool:
        return ((self.starts_at is None or self.starts_at <= at)
                and (self.ends_at is None or at < self.ends_at))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "program": self.program_id, "kind": self.kind}
        if len(self.variants) == 1 and self.variants[0].name == "default":
            out["template"] = self.variants[0].template
        else:
            out["variants"] = [{"name": v.name, "template": v.template, "percent": v.percent}
                               for v in self.variants]
        if self.validity is not None:
            out["validity_minutes"] = self.validity.total_seconds() / 60
        if self.kind == "push":
            out["audience"] = self.audience
            out["schedule"] = self.schedule.to_dict() if self.schedule else None
        else:
            out.update(keywords=list(self.keywords), join=self.join,
                       starts_at=self.starts_at.isoformat() if self.starts_at else None,
                       ends_at=self.ends_at.isoformat() if self.ends_at else None,
                       outside_reply=self.outside_reply, exhausted_reply=self.exhausted_reply)
        return out


def parse_spec(payload: Any, config: Config) -> Spec:
    """A definition from JSON, or BadRequest naming the first thing wrong."""
    if not isinstance(payload, dict):
        raise BadRequest("a campaign must be a JSON object")
    kind = payload.get("kind", "push")
    if kind not in KINDS:
        raise BadRequest(f"kind: 'push' or 'pull', got {kind!r}")
    allowed = _COMMON | (_PUSH if kind == "push" else _PULL)
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise BadRequest(f"{unknown[0]}: not a field of a {kind} campaign (known: "
                         f"{', '.join(sorted(allowed))})")
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise BadRequest(f"name: required, 1 to {MAX_NAME} characters")
    program = payload.get("program")
    programs = {p.id: p for p in config.programs}
    if not isinstance(program, str) or program not in programs:
        raise BadRequest(f"program: unknown program {program!r} (configured: "
                         f"{', '.join(sorted(programs)) or 'none'})")
    extra_fields = {"code"} if kind == "pull" else set()
    variants = _variants(payload, extra_fields)
    validity = payload.get("validity_minutes")
    if validity is not None and (isinstance(validity, bool)
                                 or not isinstance(validity, int | float) or validity <= 0):
        raise BadRequest("validity_minutes: a positive number")
    common: dict[str, Any] = {
        "name": name.strip(), "program_id": program, "kind": kind, "variants": variants,
        "validity": timedelta(minutes=validity) if validity else None}
    if kind == "push":
        audience = payload.get("audience")
        if audience is not None:
            compile_segment(audience, "audience")  # raises BadRequest naming the part
        schedule = payload.get("schedule")
        return Spec(**common, audience=audience,
                    schedule=parse_schedule(schedule) if schedule is not None else None)
    keywords = payload.get("keywords")
    if (not isinstance(keywords, list) or not keywords
            or not all(isinstance(k, str) and words(normalise(k)) for k in keywords)):
        raise BadRequest("keywords: a non-empty list of keywords (one or more words each)")
    starts, ends = (_instant(payload.get(n), n) if payload.get(n) is not None else None
                    for n in ("starts_at", "ends_at"))
    if starts and ends and ends <= starts:
        raise BadRequest("ends_at: must be after starts_at")
    texts = {}
    for key in ("outside_reply", "exhausted_reply"):
        value = payload.get(key, "")
        if not isinstance(value, str):
            raise BadRequest(f"{key}: a string")
        check_template(value, key)
        texts[key] = value
    join = payload.get("join", False)
    if not isinstance(join, bool):
        raise BadRequest("join: true or false")
    return Spec(**common, keywords=tuple(" ".join(words(normalise(k))) for k in keywords),
                starts_at=starts, ends_at=ends, join=join, **texts)


def _variants(payload: dict[str, Any], extra_fields: set[str]) -> tuple[Variant, ...]:
    if ("template" in payload) == ("variants" in payload):
        raise BadRequest("template: give either 'template' or 'variants' (A/B), not both "
                         "and not neither")
    if "template" in payload:
        template = payload["template"]
        if not isinstance(template, str) or not template.strip():
            raise BadRequest("template: a non-empty string")
        check_template(template, "template", extra_fields)
        return (Variant("default", template, 100),)
    raw = payload["variants"]
    if not isinstance(raw, list) or len(raw) < 2:
        raise BadRequest("variants: a list of two or more {name, template, percent}")
    out, names = [], set()
    for i, item in enumerate(raw):
        where = f"variants[{i}]"
        if not isinstance(item, dict) or set(item) - {"name", "template", "percent"}:
            raise BadRequest(f"{where}: an object with name, template and percent")
        name, template, percent = item.get("name"), item.get("template"), item.get("percent")
        if not isinstance(name, str) or not name.strip() or name in names:
            raise BadRequest(f"{where}.name: a name, different for each variant")
        if not isinstance(template, str) or not template.strip():
            raise BadRequest(f"{where}.template: a non-empty string")
        check_template(template, f"{where}.template", extra_fields)
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 99:
            raise BadRequest(f"{where}.percent: a whole number from 1 to 99")
        names.add(name)
        out.append(Variant(name, template, percent))
    total = sum(v.percent for v in out)
    if total != 100:
        raise BadRequest(f"variants: the percentages add up to {total}, not 100")
    return tuple(out)


def check_template(template: str, key: str, extra: set[str] | frozenset[str] = frozenset()
                   ) -> None:
    """Unknown fields are refused: a typo would send "Hi ," to a million people."""
    bad = malformed(template)
    if bad is not None:
        raise BadRequest(f"{key}: {bad!r} is not a placeholder; write {{field}} or "
                         f"{{field|default}}")
    for name in placeholders(template):
        if name in TEMPLATE_FIELDS or name in extra or _ATTRIBUTE.match(name):
            continue
        known = ", ".join(sorted(TEMPLATE_FIELDS | set(extra)))
        raise BadRequest(f"{key}: unknown field {{{name}}}; use one of {known}, or "
                         f"{{attributes.NAME}} for a custom attribute")


def parse_schedule(raw: Any) -> Schedule:
    if not isinstance(raw, dict) or not raw:
        raise BadRequest("schedule: an object: {\"now\": true}, {\"at\": ...}, "
                         "{\"cron\": ..., \"time_zone\": ...} or {\"local_time\": \"10:00\", "
                         "\"date\": ...}")
    zone = raw.get("time_zone", "UTC")
    if not isinstance(zone, str):
        raise BadRequest("schedule.time_zone: an IANA time zone such as Europe/Paris")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"schedule.time_zone: unknown time zone {zone!r}") from None
    kinds = [k for k in ("now", "at", "cron", "local_time") if k in raw]
    if len(kinds) != 1:
        raise BadRequest("schedule: exactly one of now, at, cron, local_time")
    kind = kinds[0]
    allowed = {"now": {"now"}, "at": {"at", "time_zone"},
               "cron": {"cron", "time_zone", "until"},
               "local_time": {"local_time", "date", "time_zone"}}[kind]
    extra = sorted(set(raw) - allowed)
    if extra:
        raise BadRequest(f"schedule.{extra[0]}: not used with {kind}")
    if kind == "now":
        if raw["now"] is not True:
            raise BadRequest("schedule.now: true")
        return Schedule("now")
    if kind == "at":
        return Schedule("at", at=_instant(raw["at"], "schedule.at", zone))
    if kind == "cron":
        expr = raw["cron"]
        if not isinstance(expr, str):
            raise BadRequest("schedule.cron: a crontab expression such as '0 10 * * MON'")
        try:
            CronTrigger.from_crontab(expr, timezone=ZoneInfo(zone))
        except ValueError as exc:
            raise BadRequest(f"schedule.cron: {exc}") from None
        until = _instant(raw["until"], "schedule.until", zone) if "until" in raw else None
        return Schedule("cron", cron=expr, time_zone=zone, until=until)
    text = raw["local_time"]
    match = _LOCAL_TIME.match(text) if isinstance(text, str) else None
    if not match:
        raise BadRequest("schedule.local_time: HH:MM, e.g. 10:00")
    try:
        day = date.fromisoformat(str(raw.get("date")))
    except ValueError:
        raise BadRequest("schedule.date: YYYY-MM-DD (the day of a local-time send)") from None
    if not EARLIEST.year <= day.year < LATEST.year:
        raise BadRequest(f"schedule.date: {day.isoformat()} is out of range "
                         f"(from {EARLIEST.year} to {LATEST.year})")
    return Schedule("local_time", local_time=time(int(match[1]), int(match[2])), day=day,
                    time_zone=zone)


def _instant(value: Any, key: str, zone: str | None = None) -> datetime:
    if not isinstance(value, str):
        raise BadRequest(f"{key}: an ISO 8601 date-time, e.g. 2026-12-01T10:00:00+01:00")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{key}: not an ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        if zone is None:
            raise BadRequest(f"{key}: give a UTC offset (e.g. +01:00 or Z)")
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    try:
        return within_range(parsed)
    except ValueError as exc:
        raise BadRequest(f"{key}: {exc}") from None


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    kind: str
    program_id: str
    status: str
    spec: Spec
    next_run_at: datetime | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Any, config: Config) -> Campaign:
        return cls(id=row["id"], name=row["name"], kind=row["kind"],
                   program_id=row["program_id"], status=row["status"],
                   spec=parse_spec(json.loads(row["spec_json"]), config),
                   next_run_at=datetime.fromisoformat(row["next_run_at"])
                   if row["next_run_at"] else None,
                   created_at=row["created_at"], updated_at=row["updated_at"])

    def effective_status(self, at: datetime) -> str:
        """A scheduled pull campaign is running inside its window and completed after it."""
        if self.kind == "pull" and self.status == "scheduled":
            if self.spec.ends_at is not None and at >= self.spec.ends_at:
                return "completed"
            if self.spec.in_window(at):
                return "running"
        return self.status
