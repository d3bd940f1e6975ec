"""The central customer profile: fields, typed attributes, tags, counters and a timeline.

Every change is recorded as a timeline event inside the caller's transaction, so it commits
together with the exchange that caused it, or not at all. The timeline is also the CRM sync
outbox: each endpoint's relay keeps a cursor into it (gateway.sync).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache, lru_cache
from typing import Any
from zoneinfo import available_timezones

import phonenumbers
from phonenumbers import timezone as phone_timezone

from gateway.clock import isoformat
from gateway.db import Database, Row, Tx, dumps
from gateway.db import consent as consent_sql
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


_EVENT_PREFIX = secrets.token_hex(8)
_event_numbers = itertools.count(1)


def new_event_id() -> str:
    """32 hex digits, unique: the idempotency key receivers de-duplicate on. 64 random bits
    drawn once per process, then a counter (a random draw per event is a system call, on
    the path of every message)."""
    return f"{_EVENT_PREFIX}{next(_event_numbers):016x}"


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=65536)
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

    def to_dict(self, *, derived: bool = True) -> dict[str, Any]:
        """The JSON form; `derived=False` leaves out what is computed from the number
        (the time zones), as event snapshots do: it is costly to compute for every row of
        an import and the receiver can derive it as well as we can."""
        out = {
            "phone": self.phone, "first_name": self.first_name, "last_name": self.last_name,
            "email": self.email, "language": self.language, "time_zone": self.time_zone,
            "attributes": self.attributes, "tags": list(self.tags),
            "counters": {"inbound": self.inbound_count, "outbound": self.outbound_count,
                         "delivered": self.delivered_count, "failed": self.failed_count},
            "last_inbound_at": self.last_inbound_at, "last_outbound_at": self.last_outbound_at,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }
        if derived:
            out["derived_time_zones"] = list(derived_time_zones(self.phone))
        return out


@dataclass(frozen=True)
class ImportedConsent:
    """Consent given elsewhere, arriving with an import row, with its evidence."""

    program_id: str
    opt_in: bool
    source: str
    captured_at: str  # ISO 8601
    evidence: dict[str, str]
    line: int = 0


@dataclass(frozen=True)
class ProfileChanges:
    """What to change: fields (None clears), attributes (None removes), tags."""

    fields: dict[str, str | None] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    replace_attributes: bool = False
    tags_add: tuple[str, ...] = ()
    tags_remove: tuple[str, ...] = ()
    replace_tags: tuple[str, ...] | None = None
    #: Consent that came with the change (imports); the consent ledger records it.
    consents: tuple[ImportedConsent, ...] = ()

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
            else self.replace_tags,
            consents=self.consents + later.consents)


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
    return check_attribute_value(name, value)


def check_attribute_value(name: str, value: Any) -> Any:
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


class _State:
    """A profile being changed in a batch: plain mutable values, cheap to build per row."""

    __slots__ = ("attributes", "attributes_json", "fields", "row", "seq", "tags", "tags_json")

    def __init__(self, row: Row | None) -> None:
        self.row = row
        self.attributes: dict[str, Any]
        self.tags: list[str]
        if row is None:
            self.fields: dict[str, Any] = dict.fromkeys(FIELDS)
            self.attributes_json, self.tags_json = "{}", "[]"
            self.attributes, self.tags = {}, []
            self.seq = 0
        else:
            self.fields = {name: row[name] for name in FIELDS}
            self.attributes_json, self.tags_json = row["attributes_json"], row["tags_json"]
            self.attributes = json.loads(self.attributes_json)
            self.tags = json.loads(self.tags_json)
            self.seq = row["seq"]

    def apply(self, changes: ProfileChanges) -> dict[str, Any]:
        """Apply `changes`; returns what changed, as {name: {"old", "new"}}."""
        diff: dict[str, Any] = {}
        for name, value in changes.fields.items():
            if self.fields[name] != value:
                diff[name] = {"old": self.fields[name], "new": value}
                self.fields[name] = value
        attributes = {} if changes.replace_attributes else dict(self.attributes)
        for name, value in changes.attributes.items():
            if value is None:
                attributes.pop(name, None)
            else:
                attributes[name] = value
        if attributes != self.attributes:
            diff["attributes"] = {"old": self.attributes, "new": attributes}
            self.attributes, self.attributes_json = attributes, dumps(attributes)
        tags = list(dict.fromkeys(changes.replace_tags)) if changes.replace_tags is not None \
            else list(self.tags)
        tags += [t for t in changes.tags_add if t not in tags]
        if changes.tags_remove:
            tags = [t for t in tags if t not in changes.tags_remove]
        if tags != self.tags:
            diff["tags"] = {"old": self.tags, "new": tags}
            self.tags, self.tags_json = tags, dumps(tags)
        return diff

    def values(self, phone: str, stamp: str) -> tuple[Any, ...]:
        """The row in `sql.PROFILE_COLUMNS` order (counters of a new profile start at 0)."""
        f = self.fields
        row = self.row
        return (phone, f["first_name"], f["last_name"], f["email"], f["language"],
                f["time_zone"], self.attributes_json, self.tags_json,
                row["inbound_count"] if row else 0, row["outbound_count"] if row else 0,
                row["delivered_count"] if row else 0, row["failed_count"] if row else 0,
                row["last_inbound_at"] if row else None,
                row["last_outbound_at"] if row else None, self.seq,
                row["created_at"] if row else stamp, stamp)


def _new_profile(phone: str, changes: ProfileChanges, stamp: str
                 ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The row and the diff of a profile created by `changes`: `_State` made short for the
    common case of an import, which creates most of its profiles."""
    diff: dict[str, Any] = {name: {"old": None, "new": value}
                            for name, value in changes.fields.items() if value is not None}
    attributes = {k: v for k, v in changes.attributes.items() if v is not None}
    tags = list(dict.fromkeys((changes.replace_tags or ()) + changes.tags_add))
    attributes_json = tags_json = None
    if attributes:
        diff["attributes"] = {"old": {}, "new": attributes}
        attributes_json = dumps(attributes)
    if tags:
        diff["tags"] = {"old": [], "new": tags}
        tags_json = dumps(tags)
    get = changes.fields.get
    return (phone, get("first_name"), get("last_name"), get("email"), get("language"),
            get("time_zone"), attributes_json or "{}", tags_json or "[]", 0, 0, 0, 0, None,
            None, 1, stamp, stamp), diff


class ProfileStore:
    """Profile changes and timeline events, each written inside the caller's transaction."""

    def __init__(self, *, default_region: str = "US") -> None:
        self.default_region = default_region

    def normalise(self, raw: str) -> str:
        try:
            return to_e164(raw, self.default_region)
        except InvalidNumber as exc:
            raise InvalidNumber(f"phone: {exc}") from exc

    async def load(self, db: Database | Tx, phone: str) -> Profile | None:
        if isinstance(db, Tx):
            await db.flush(_TIMELINE)  # this write's events count too
        row = await sql.get(db, phone)
        return Profile.from_row(row) if row else None

    async def record(self, tx: Tx, phone: str, type_: str, data: dict[str, Any],
                     at: datetime) -> str:
        """Append an event to the timeline and the sync outbox; returns its event id.

        Events are buffered and written when the write function ends (or before anything
        here reads a profile), a few statements for all of them: a message, its consent
        change and its reply are three events on one profile."""
        return self._buffer(tx, [(phone, type_, data, at, _NOT_COUNTED)])[0]

    def _buffer(self, tx: Tx, items: Sequence[_Item]) -> list[str]:
        pending = tx.buffer(_TIMELINE, list, self._write_timeline)
        ids = [new_event_id() for _ in items]
        pending.extend((event_id, *item) for event_id, item in zip(ids, items, strict=True))
        return ids

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
        await tx.flush(_TIMELINE)
        stamp = isoformat(at)
        existing = {row["phone"]: row
                    for row in await sql.get_many(tx, [phone for phone, _ in items])}
        rows: list[tuple[Any, ...]] = []
        events: list[tuple[str, int, str]] = []
        created = changed = 0
        for phone, changes in items:
            row = existing.get(phone)
            if row is None and not changes.tags_remove:
                values, diff = _new_profile(phone, changes, stamp)
                rows.append(values)
                events.append((phone, 1, dumps(
                    {"source": source, "created": True, "changes": diff})))
                created += 1
                continue
            state = _State(row)
            diff = state.apply(changes)
            if not diff and row is not None:
                continue
            state.seq += 1
            rows.append(state.values(phone, stamp))
            events.append((phone, state.seq, dumps(
                {"source": source, "created": row is None, "changes": diff})))
            if row is None:
                created += 1
            else:
                changed += 1
        if not rows:
            return 0, 0
        await sql.upsert_many(tx, rows)
        await sql.insert_events_many(tx, [
            (new_event_id(), phone, seq, event_type, stamp, data)
            for phone, seq, data in events])
        return created, changed

    async def erase(self, tx: Tx, phone: str, at: datetime) -> str:
        """Erase personal data of `phone`, keep its suppression record, tell the CRM.

        The number itself stays in the suppression list (so it is never messaged again
        without a new opt-in) and in the delivery log; names, email, attributes, tags,
        message bodies and raw provider parameters are blanked everywhere.
        """
        await tx.flush(_TIMELINE)  # what is already on the timeline is redacted too
        await sql.redact_person(tx, phone)
        await consent_sql.redact(tx, phone)
        await sql.suppress(tx, phone, "erased", at)
        return await self.record(tx, phone, "profile.erased", {"suppressed": True}, at)

    async def on_inbound(self, tx: Tx, msg: InboundMessage) -> None:
        self._buffer(tx, [(msg.from_number, "message.in", {
            "provider": msg.provider, "provider_sid": msg.provider_sid,
            "short_code": msg.to_number, "body": msg.body, "segments": msg.num_segments,
        }, msg.received_at, _INBOUND)])

    async def on_outbound(self, tx: Tx, sent: Sequence[tuple[str, dict[str, Any]]],
                          at: datetime) -> None:
        """Messages handed to the provider, as (phone, details): each lands on its
        recipient's timeline (and so in the CRM sync), counted."""
        self._buffer(tx, [(phone, "message.out", data, at, _SENT) for phone, data in sent])

    async def on_campaign(self, tx: Tx, items: Sequence[tuple[str, str, dict[str, Any]]],
                          at: datetime) -> None:
        """Campaign membership as (phone, event type, details), e.g. ``campaign.queued``."""
        self._buffer(tx, [(phone, type_, data, at, _NOT_COUNTED)
                          for phone, type_, data in items])

    async def on_status(self, tx: Tx, update: StatusUpdate) -> None:
        """A receipt for a message to a known customer lands on their profile."""
        await self.on_statuses(tx, [update])

    async def on_statuses(self, tx: Tx, updates: Sequence[StatusUpdate]) -> None:
        """Receipts for messages to known customers land on their profiles."""
        phones: dict[int, str] = {}
        for i, update in enumerate(updates):
            raw = str(update.params.get("To", ""))
            try:
                phones[i] = to_e164(raw, self.default_region)
            except InvalidNumber:
                continue
        if not phones:
            return
        await tx.flush(_TIMELINE)
        known = await sql.existing(tx, sorted(set(phones.values())))
        items = []
        for i, phone in phones.items():
            if phone not in known:
                continue
            update = updates[i]
            final = update.status in FINAL_DELIVERED | FINAL_FAILED
            ok = final and update.status in FINAL_DELIVERED
            items.append((phone, "message.status", {
                "provider": update.provider, "provider_sid": update.provider_sid,
                "status": update.status, "error_code": update.error_code,
            }, update.received_at, (0, 0, int(ok), int(final and not ok))))
        self._buffer(tx, items)

    @staticmethod
    async def _write_timeline(tx: Tx, items: list[tuple[str, str, str, dict[str, Any],
                                                        datetime, _Counts]]) -> None:
        """Buffered events (event id, phone, type, data, time, counts) appended in order,
        with their counters, in a few statements for all of them."""
        if not items:
            return
        totals: dict[str, list[Any]] = {}
        for _, phone, _, _, at, (inbound, sent, ok, bad) in items:
            total = totals.setdefault(phone, [0, 0, 0, 0, 0, None])
            total[0] += inbound
            total[1] += sent
            total[2] += ok
            total[3] += bad
            total[4] += 1
            if inbound and (total[5] is None or at > total[5]):
                total[5] = at
        stamp = isoformat(max(at for _, _, _, _, at, _ in items))
        last = await sql.bump(tx, [
            (p, t[0], t[1], t[2], t[3], t[4], isoformat(t[5]) if t[5] else None, stamp)
            for p, t in totals.items()])
        seq = {phone: last[phone] - t[4] + 1 for phone, t in totals.items()}
        rows = []
        for event_id, phone, type_, data, at, _ in items:
            rows.append((event_id, phone, seq[phone], type_, isoformat(at), dumps(data)))
            seq[phone] += 1
        await sql.insert_events_many(tx, rows)


#: (inbound, sent, delivered, failed) an event adds to its profile's counters.
_Counts = tuple[int, int, int, int]
_NOT_COUNTED: _Counts = (0, 0, 0, 0)
_INBOUND: _Counts = (1, 0, 0, 0)
_SENT: _Counts = (0, 1, 0, 0)
#: (phone, type, data, time, counts): one timeline event before it is written.
_Item = tuple[str, str, dict[str, Any], datetime, _Counts]
#: The key of the timeline's buffer in a write function's Tx.
_TIMELINE = "profiles.timeline"
