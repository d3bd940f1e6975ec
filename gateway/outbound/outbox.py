"""Putting messages on the queue: checked when queued, so a body that cannot go is refused
at once with a clear error instead of failing later at the provider."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.clock import isoformat
from gateway.config import Config
from gateway.db import Tx
from gateway.db import outbound as sql
from gateway.errors import BadRequest
from gateway.sms import segment

PURPOSES = ("marketing", "transactional", "reply")


class Priority(enum.IntEnum):
    """Lower goes first: a customer waiting for an answer before a campaign's thousands."""

    REPLY = 0
    TRANSACTIONAL = 1
    CAMPAIGN = 2


class QueueRefused(BadRequest):
    code = "message_refused"


@dataclass(frozen=True)
class NewMessage:
    to_number: str  # E.164
    body: str
    program_id: str
    purpose: str  # marketing, transactional or reply
    campaign_id: str | None = None
    priority: Priority | None = None  # None: from the purpose
    #: Not sent later than this after `not_before` (or queuing). None: outbound.validity_minutes,
    #: counted from when consent rules first let it go (quiet hours move it on).
    validity: timedelta | None = None
    not_before: datetime | None = None


class Outbox:
    """Validates and queues messages; the sender is the program's short code."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.programs = {p.id: p for p in config.programs}
        self.max_chars = config.outbound.max_body_chars
        self.validity = timedelta(minutes=config.outbound.validity_minutes)

    def check(self, msg: NewMessage) -> tuple[str, str, int]:
        """(sender, encoding, segments), or QueueRefused saying what is wrong."""
        program = self.programs.get(msg.program_id)
        if program is None:
            raise QueueRefused(f"program: unknown program {msg.program_id!r}")
        if msg.purpose not in PURPOSES:
            raise QueueRefused(f"purpose: must be one of {', '.join(PURPOSES)}, "
                               f"got {msg.purpose!r}")
        if not msg.body.strip():
            raise QueueRefused("body: a message needs some text")
        if len(msg.body) > self.max_chars:
            raise QueueRefused(f"body: {len(msg.body)} characters, more than the "
                               f"{self.max_chars} the provider accepts")
        if msg.validity is not None and msg.validity <= timedelta(0):
            raise QueueRefused("validity: must be a positive duration")
        parts = segment(msg.body)
        return program.short_code, parts.encoding, parts.segments

    async def queue(self, tx: Tx, msg: NewMessage, at: datetime) -> int:
        return (await self.queue_many(tx, [msg], at))[0]

    async def queue_many(self, tx: Tx, messages: Sequence[NewMessage], at: datetime
                         ) -> list[int]:
        """Queue every message or none (the first invalid one is refused)."""
        rows = []
        created = isoformat(at)
        for msg in messages:
            sender, encoding, segments = self.check(msg)
            priority = msg.priority if msg.priority is not None else (
                Priority.REPLY if msg.purpose == "reply" else
                Priority.CAMPAIGN if msg.campaign_id else Priority.TRANSACTIONAL)
            start = msg.not_before if msg.not_before and msg.not_before > at else at
            expires = start + (msg.validity or self.validity)
            later = msg.not_before if msg.not_before and msg.not_before > at else None
            rows.append((sender, msg.to_number, msg.body, msg.program_id, msg.purpose, encoding,
                         segments, int(priority), msg.campaign_id, created, isoformat(expires),
                         isoformat(later) if later else None, int(msg.validity is not None)))
        return await sql.insert_many(tx, rows) if rows else []
