"""The central customer profile: fields, typed attributes, tags, counters and a timeline.

Every change goes through ``ProfileStore.record``, inside the caller's transaction, so the
timeline entry and the CRM sync outbox rows commit together with the exchange that caused
them, or not at all.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import cache
from typing import Any
from zoneinfo import available_timezones

import phonenumbers
from phonenumbers import timezone as phone_timezone

from gateway.clock import isoformat
from gateway.db import Row, Tx
from gateway.db import profiles as sql
from gateway.errors import BadRequest, InvalidNumber
from gateway.models import InboundMessage, StatusUpdate
from gateway.phone import to_e164

FIELDS = sql.FIELDS
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_TAG = re.compile(r"^[^\s,;][^,;]{0,63}$")
FINAL_DELIVERED = frozenset({"delivered", "read"})
FINAL_FAILED = frozenset({"undelivered", "failed"})


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def derived_time_zones(phone: str) -> tuple[str, ...]:
    """The zones phonenumbers places this number in; several for some countries (US, RU, AU)."""
    try:
        parsed = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return ()
    zones = phone_timezone.time_zones_for_number(parsed)
    return tuple(z for z in zones if z != "Etc/Unknown")


@dataclass(frozen=True)
class Profile:
    phone: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    language: str | None = None
    time_zone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    inbound_count: int = 0
    outbound_count: int = 0
    delivered_count: int = 0
    failed_count: int = 0
    last_inbound_at: str | None = None
    last_outbound_at: str | None = None
    created_at: str = ""
    updated_at: str = ""
    seq: int = 0  # events recorded so far; the next event is seq + 1

    @classmethod
    def from_row(cls, row: Row) -> Profile:
        return cls(
            phone=row["phone"], first_name=row["first_name"], last_name=row["last_name"],
            email=row["email"], language=row["language"], time_zone=row["time_zone"],
            attributes=json.loads(row["attributes_json"]),
            tags=tuple(json.loads(row["tags_json"])), inbound_count=row["inbound_count"],
            outbound_count=row["outbound_count"], delivered_count=row["delivered_count"],
            failed_count=row["failed_count"], last_inbound_at=row["last_inbound_at"],
            last_outbound_at=row["last_outbound_at"], created_at=row["created_at"],
            updated_at=row["updated_at"], seq=row["seq"])

    @property
    def effective_time_zones(self) -> tuple[str, ...]:
        """The explicit zone when known, else every zone the number may be in."""
        return (self.time_zone,) if self.time_zone else derived_time_zones(self.phone)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phone": self.phone, "first_name": self.first_name, "last_name": self.last_name,
            "email": self.email, "language": self.language, "time_zone": self.time_zone,
            "derived_time_zones": list(derived_time_zones(self.phone)),
            "attributes": self.attributes, "tags": list(self.tags),
            "counters": {"inbound": self.inbound_count, "outbound": self.outbound_count,
                         "delivered": self.delivered_count, "failed": self.failed_count},
            "last_inbound_at": self.last_inbound_at, "last_outbound_at": self.last_outbound_at,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class ProfileChanges:
    """What to change: fields (None clears), attributes (None removes), tags."""

    fields: dict[str, str | None] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    replace_attributes: bool = False
    tags_add: tuple[str, ...] = ()
    tags_remove: tuple[str, ...] = ()
    replace_tags: tuple[str, ...] | None = None

    def merge(self, later: ProfileChanges) -> ProfileChanges:
        """Two rows for one number: the later row's values win, tags are united."""
        return ProfileChanges(
            fields={**self.fields, **later.fields},
            attributes=later.attributes if later.replace_attributes
            else {**self.attributes, **later.attributes},
            replace_attributes=self.replace_attributes or later.replace_attributes,
            tags_add=tuple(dict.fromkeys(self.tags_add + later.tags_add)),
            tags_remove=tuple(dict.fromkeys(self.tags_remove + later.tags_remove)),
            replace_tags=later.replace_tags if later.replace_tags is not None
            else self.replace_tags)


def check_field(name: str, value: Any) -> str | None:
    """Validate one profile field; raises BadRequest naming the field."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name}: expected a string")
    value = value.strip()
    if name == "email" and not _EMAIL.match(value):
        raise BadRequest(f"email: {value!r} is not an email address")
    if name == "language" and not _LANGUAGE.match(value):
        raise BadRequest(f"language: {value!r} is not a language tag (e.g. 'en', 'fa-IR')")
    if name == "time_zone" and value not in _zones():
        raise BadRequest(f"time_zone: {value!r} is not an IANA time zone (e.g. 'Asia/Tehran')")
    if name in ("first_name", "last_name") and len(value) > 200:
        raise BadRequest(f"{name}: longer than 200 characters")
    return value


def check_attribute(name: str, value: Any) -> Any:
    if not _ATTRIBUTE_NAME.match(name):
        raise BadRequest(f"attributes.{name}: names are letters, digits and '_' (up to 64)")
    if value is not None and not isinstance(value, str | int | float | bool):
        raise BadRequest(f"attributes.{name}: values are strings, numbers, booleans or null")
    if isinstance(value, str) and len(value) > 1000:
        raise BadRequest(f"attributes.{name}: longer than 1000 characters")
    return value


def check_tag(tag: Any) -> str:
    if not isinstance(tag, str) or not _TAG.match(tag.strip()):
        raise BadRequest(f"tags: {tag!r} is not a tag (no commas or semicolons, up to 64)")
    return tag.strip()


def parse_changes(payload: Any, *, replace: bool) -> ProfileChanges:
    """From a JSON body (PUT replaces the profile, PATCH changes what it names)."""
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    known = set(FIELDS) | {"attributes", "tags", "add_tags", "remove_tags", "phone"}
    unknown = sorted(set(payload) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise BadRequest(f"{unknown[0]}: unknown profile field (known: {names})")
    fields = {name: check_field(name, payload[name]) for name in FIELDS if name in payload}
    if replace:
        fields = {name: fields.get(name) for name in FIELDS}
    attributes = payload.get("attributes", {})
    if not isinstance(attributes, dict):
        raise BadRequest("attributes: expected an object")
    tags = payload.get("tags")
    if tags is not None and not isinstance(tags, list):
        raise BadRequest("tags: expected an array")
    for key in ("add_tags", "remove_tags"):
        if not isinstance(payload.get(key, []), list):
            raise BadRequest(f"{key}: expected an array")
    return ProfileChanges(
        fields=fields,
        attributes={k: check_attribute(k, v) for k, v in attributes.items()},
        replace_attributes=replace,
        tags_add=tuple(check_tag(t) for t in payload.get("add_tags", [])),
        tags_remove=tuple(check_tag(t) for t in payload.get("remove_tags", [])),
        replace_tags=tuple(check_tag(t) for t in tags) if tags is not None
        else (() if replace else None))


def parse_date(text: str) -> str:
    """ISO date or date-time, normalised; ValueError otherwise."""
    text = text.strip()
    if len(text) == 10:
        return date.fromisoformat(text).isoformat()
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a date-time needs a UTC offset (e.g. 2026-01-02T10:00:00+00:00)")
    return isoformat(parsed)


def plan_change(before: Profile, changes: ProfileChanges) -> tuple[Profile, dict[str, Any]]:
    """The profile after `changes`, and what changed ({name: {"old", "new"}})."""
    attributes = {} if changes.replace_attributes else dict(before.attributes)
    for name, value in changes.attributes.items():
        if value is None:
            attributes.pop(name, None)
        else:
            attributes[name] = value
    tags = list(dict.fromkeys(changes.replace_tags)) if changes.replace_tags is not None \
        else list(before.tags)
    tags += [t for t in changes.tags_add if t not in tags]
    tags = [t for t in tags if t not in changes.tags_remove]
    diff: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for name, value in changes.fields.items():
        if getattr(before, name) != value:
            diff[name] = {"old": getattr(before, name), "new": value}
            values[name] = value
    if attributes != before.attributes:
        diff["attributes"] = {"old": before.attributes, "new": attributes}
    if tuple(tags) != before.tags:
        diff["tags"] = {"old": list(before.tags), "new": tags}
    return replace(before, **values, attributes=attributes, tags=tuple(tags)), diff


def profile_row(p: Profile) -> tuple[Any, ...]:
    """The profile as a row in `sql.PROFILE_COLUMNS` order."""
    return (p.phone, p.first_name, p.last_name, p.email, p.language, p.time_zone,
            sql.dumps(p.attributes), sql.dumps(list(p.tags)), p.inbound_count,
            p.outbound_count, p.delivered_count, p.failed_count, p.last_inbound_at,
            p.last_outbound_at, p.seq, p.created_at, p.updated_at)


class ProfileStore:
    """Profile changes and timeline events, each written inside the caller's transaction."""

    def __init__(self, *, sync_endpoints: tuple[str, ...] = (), default_region: str = "US"
                 ) -> None:
        self.sync_endpoints = sync_endpoints
        self.default_region = default_region

    def normalise(self, raw: str) -> str:
        try:
            return to_e164(raw, self.default_region)
        except InvalidNumber as exc:
            raise InvalidNumber(f"phone: {exc}") from exc

    async def load(self, tx: Tx, phone: str) -> Profile | None:
        row = await sql.get(tx, phone)
        return Profile.from_row(row) if row else None

    async def record(self, tx: Tx, phone: str, type_: str, data: dict[str, Any],
                     at: datetime) -> str:
        """Append an event to the timeline and the sync outbox; returns its event id."""
        await sql.ensure(tx, phone, at)
        seq = await sql.next_seq(tx, phone)
        row = await sql.get(tx, phone)
        assert row is not None  # ensure() just made sure
        event_id = str(uuid.uuid4())
        ref = await sql.insert_event(tx, event_id=event_id, phone=phone, seq=seq, type_=type_,
                                     occurred_at=at, data=data,
                                     profile=Profile.from_row(row).to_dict())
        if self.sync_endpoints:
            await sql.enqueue_sync(tx, ref, self.sync_endpoints, at)
        return event_id

    async def apply(self, tx: Tx, phone: str, changes: ProfileChanges, at: datetime, *,
                    source: str, event_type: str = "profile.updated") -> Profile:
        """Change a profile (creating it if new); records what changed, if anything did."""
        await self.apply_many(tx, [(phone, changes)], at, source=source, event_type=event_type)
        after = await self.load(tx, phone)
        assert after is not None
        return after

    async def apply_many(self, tx: Tx, items: Sequence[tuple[str, ProfileChanges]],
                         at: datetime, *, source: str, event_type: str = "profile.updated"
                         ) -> tuple[int, int]:
        """Many changes in a handful of statements (imports); returns (created, changed).

        Each phone may appear once in `items` (merge duplicates first).
        """
        stamp = isoformat(at)
        existing = {row["phone"]: Profile.from_row(row)
                    for row in await sql.get_many(tx, [phone for phone, _ in items])}
        rows: list[Profile] = []
        events: list[tuple[str, Profile, dict[str, Any]]] = []
        created = changed = 0
        for phone, changes in items:
            before = existing.get(phone)
            is_new = before is None
            base = before or Profile(phone=phone, created_at=stamp, updated_at=stamp)
            after, diff = plan_change(base, changes)
            if not diff and not is_new:
                continue
            after = replace(after, seq=base.seq + 1, updated_at=stamp)
            rows.append(after)
            events.append((str(uuid.uuid4()), after,
                           {"source": source, "created": is_new, "changes": diff}))
            created += is_new
            changed += not is_new
        if not rows:
            return 0, 0
        await sql.upsert_many(tx, [profile_row(p) for p in rows])
        await sql.insert_events_many(tx, [
            (event_id, p.phone, p.seq, event_type, stamp, sql.dumps(data),
             sql.dumps(p.to_dict())) for event_id, p, data in events])
        if self.sync_endpoints:
            await sql.enqueue_sync_many(tx, [e[0] for e in events], self.sync_endpoints, at)
        return created, changed

    async def erase(self, tx: Tx, phone: str, at: datetime) -> str:
        """Erase personal data of `phone`, keep its suppression record, tell the CRM.

        The number itself stays in the suppression list (so it is never messaged again
        without a new opt-in) and in the delivery log; names, email, attributes, tags,
        message bodies and raw provider parameters are blanked everywhere.
        """
        await sql.ensure(tx, phone, at)
        await sql.redact_person(tx, phone)
        await sql.suppress(tx, phone, "erased", at)
        return await self.record(tx, phone, "profile.erased", {"suppressed": True}, at)

    async def on_inbound(self, tx: Tx, msg: InboundMessage) -> None:
        await sql.ensure(tx, msg.from_number, msg.received_at)
        await sql.count_inbound(tx, msg.from_number, msg.received_at)
        await self.record(tx, msg.from_number, "message.in", {
            "provider": msg.provider, "provider_sid": msg.provider_sid,
            "short_code": msg.to_number, "body": msg.body, "segments": msg.num_segments,
        }, msg.received_at)

    async def on_status(self, tx: Tx, update: StatusUpdate) -> None:
        """A receipt for a message to a known customer lands on their profile."""
        raw = str(update.params.get("To", ""))
        try:
            phone = to_e164(raw, self.default_region)
        except InvalidNumber:
            return
        if await sql.get(tx, phone) is None:
            return
        if update.status in FINAL_DELIVERED | FINAL_FAILED:
            await sql.count_delivery(tx, phone, update.status in FINAL_DELIVERED,
                                     update.received_at)
        await self.record(tx, phone, "message.status", {
            "provider": update.provider, "provider_sid": update.provider_sid,
            "status": update.status, "error_code": update.error_code,
        }, update.received_at)
