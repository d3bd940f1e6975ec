"""Relay of profile events from the outbox to the company's CRM: signed, ordered, retried.

One relay per endpoint sends the oldest pending events first, in batches, so the events of
a profile always arrive in the order they happened. Each event carries what it changed
(``data``) and the profile as it is when the batch is sent (``profile``). A batch is marked
delivered only after a 2xx answer; anything else is retried with exponential back-off and
jitter (:func:`gateway.links.backoff`: a commit wakes an idle relay, never one that is
waiting out a failure), and events still undelivered after ``sync.max_age_hours`` become
dead letters (replayable). A crash between the receiver's 2xx and our commit sends that
batch again: receivers de-duplicate on the event id, which never changes.

Signature: ``X-MCRM-Signature: sha256=<hex>``, the HMAC-SHA256 with the endpoint's secret of
``<X-MCRM-Timestamp>.<raw body>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from gateway.clock import Clock, isoformat
from gateway.config import SyncConfig, SyncEndpointConfig
from gateway.db import Database, Row, Tx
from gateway.db import sync as sql
from gateway.db.profiles import get_many as get_profiles
from gateway.links import Link, backoff
from gateway.metrics import GatewayMetrics
from gateway.profiles import Profile

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-MCRM-Signature"
TIMESTAMP_HEADER = "X-MCRM-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (and our tests): constant-time comparison of the signature."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def event_json(row: Row, profile: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": row["event_id"], "type": row["type"], "occurred_at": row["occurred_at"],
            "phone": row["phone"], "sequence": row["seq"],
            "data": json.loads(row["data_json"]), "profile": profile}


class DeliveryFailed(Exception):
    """`kind`: unreachable (no answer at all), unavailable (502/503/504/429: down for now)
    or error (any other answer); a change of kind starts a new back-off."""

    def __init__(self, message: str, retry_after: float | None = None,
                 kind: str = "error") -> None:
        super().__init__(message)
        self.retry_after, self.kind = retry_after, kind


class SyncRelay:
    """Delivers one endpoint's outbox; `run()` is its background worker."""

    def __init__(self, db: Database, clock: Clock, session: aiohttp.ClientSession,
                 endpoint: SyncEndpointConfig, settings: SyncConfig,
                 metrics: GatewayMetrics) -> None:
        self.db, self.clock, self.session = db, clock, session
        self.endpoint, self.settings, self.metrics = endpoint, settings, metrics
        #: Its health; its streak (failures in a row, of one kind) sets the back-off.
        self.link = Link(f"CRM endpoint {endpoint.name}", trip_after=settings.down_after_failures)
        self._wake = asyncio.Event()
        self._started = False

    @property
    def failures(self) -> int:
        return self.link.failures

    def wake(self) -> None:
        """New events were committed: look now instead of at the next poll (an idle wait
        only; a wait after a failure is slept out whatever is committed meanwhile)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                sent = await self.deliver_once()
            except DeliveryFailed as exc:
                await asyncio.sleep(self._backoff(exc.retry_after))
                continue
            except Exception as exc:  # our side failed (database busy …): keep the relay alive
                if self.link.failures == 0:
                    log.exception("sync relay %s: unexpected error", self.endpoint.name)
                self.link.failed(f"{type(exc).__name__}: {exc}", "ours")
                await asyncio.sleep(self._backoff(None))
                continue
            if sent == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(),
                                           timeout=self.settings.poll_interval_seconds)

    def _backoff(self, retry_after: float | None) -> float:
        cap = self.settings.retry_max_seconds
        delay = backoff(self.link.streak, self.settings.retry_initial_seconds, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, cap))
        return delay

    async def deliver_once(self) -> int:
        """Send the next batch; returns how many events were delivered (0: nothing pending).

        Replayed dead letters go first, then the events after the endpoint's cursor.
        """
        name, size = self.endpoint.name, self.endpoint.batch_size
        if not self._started:
            await self.db.write(lambda tx: sql.ensure_cursor(tx, name))
            self._started = True
        replays = await sql.replays(self.db, name, size)
        if replays:
            return await self._send(replays, replay=True)
        cursor = await sql.cursor(self.db, name)
        rows = await sql.next_events(self.db, cursor["last_ref"] if cursor else 0, size)
        if not rows:
            return 0
        return await self._send(rows, replay=False,
                                attempts=cursor["attempts"] if cursor else 0)

    async def _send(self, rows: list[Row], *, replay: bool, attempts: int = 0) -> int:
        name = self.endpoint.name
        # The profile as it is now: the newest state, already redacted if it was erased.
        profiles = {r["phone"]: Profile.from_row(r).to_dict() for r in await get_profiles(
            self.db, sorted({row["phone"] for row in rows}))}
        try:
            await self._post([event_json(row, profiles.get(row["phone"])) for row in rows])
        except DeliveryFailed as exc:
            await self._failed(rows, exc, replay=replay, attempts=attempts)
            raise
        now = self.clock.now()
        if replay:
            letters = [row["letter"] for row in rows]
            await self.db.write(lambda tx: sql.replays_delivered(tx, name, letters, now))
        else:
            last = rows[-1]["ref"]
            await self.db.write(lambda tx: sql.advance(tx, name, last, now))
        self.link.succeeded()
        self.metrics.sync_delivered.inc(len(rows), endpoint=name)
        log.debug("sync to %s delivered %d events", name, len(rows))
        return len(rows)

    async def _failed(self, rows: list[Row], exc: DeliveryFailed, *, replay: bool,
                      attempts: int) -> None:
        name, now, error = self.endpoint.name, self.clock.now(), str(exc)
        self.link.failed(error, exc.kind)
        self.metrics.sync_failures.inc(endpoint=name)
        dead_before = now - timedelta(hours=self.settings.max_age_hours)
        if replay:
            letters = [row["letter"] for row in rows]
            dead = await self.db.write(lambda tx: sql.replays_failed(
                tx, name, letters, error, now, dead_before))
        else:
            # Only a leading run of too-old events is set aside, so order is never broken.
            cutoff = isoformat(dead_before)
            stale = []
            for row in rows:
                if row["occurred_at"] >= cutoff:
                    break
                stale.append(row["ref"])

            async def record(tx: Tx) -> None:
                await sql.cursor_failed(tx, name, error, now)
                if stale:
                    await sql.bury(tx, name, stale, attempts + 1, error, now)

            await self.db.write(record)
            dead = len(stale)
        # The link logs its changes of state; an attempt is one line at debug level.
        log.debug("sync to %s failed (%d events, attempt %d): %s", name, len(rows),
                  attempts + 1, error)
        if dead:
            log.warning("sync to %s: %d event(s) older than %gh moved to dead letters (%s)",
                        name, dead, self.settings.max_age_hours, error)

    async def _post(self, events: list[dict[str, Any]]) -> None:
        body = json.dumps({"events": events}, ensure_ascii=False,
                          separators=(",", ":")).encode()
        timestamp = str(int(self.clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(str(self.endpoint.secret), timestamp, body),
            "X-MCRM-Delivery": str(uuid.uuid4()),
        }
        timeout = aiohttp.ClientTimeout(total=self.endpoint.timeout_seconds)
        try:
            async with self.session.post(self.endpoint.url, data=body, headers=headers,
                                         timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return
                text = (await response.text(errors="replace"))[:200]
                retry_after = _retry_after(response.headers.get("Retry-After"))
                kind = ("unavailable" if response.status in (429, 502, 503, 504)
                        else "error")
                raise DeliveryFailed(f"HTTP {response.status}: {text}".strip(), retry_after,
                                     kind)
        except TimeoutError:
            raise DeliveryFailed(f"no answer within {self.endpoint.timeout_seconds:g}s",
                                 kind="unreachable") from None
        except aiohttp.ClientError as exc:
            raise DeliveryFailed(f"cannot reach {self.endpoint.url}: {exc}",
                                 kind="unreachable") from None

    async def status(self) -> dict[str, Any]:
        row = await sql.status(self.db, self.endpoint.name)
        now = self.clock.now()
        oldest = row["oldest"] if row else None
        lag = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
        return {
            "endpoint": self.endpoint.name, "url": self.endpoint.url,
            "backlog": (row["backlog"] + row["replaying"]) if row else 0,
            "lag_seconds": round(max(lag, 0.0), 3),
            "dead_letters": row["dead"] if row else 0,
            "delivered_up_to": row["last_ref"] if row else 0,
            "last_error": row["last_error"] if row else None,
            "last_error_at": row["last_error_at"] if row else None,
            "last_success_at": row["last_success_at"] if row else None,
            "consecutive_failures": self.failures,
            "state": self.link.state.value,
        }


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


class SyncHub:
    """All relays of this process: wake them after a commit, report their status."""

    def __init__(self, relays: list[SyncRelay]) -> None:
        self.relays = relays

    def wake(self) -> None:
        for relay in self.relays:
            relay.wake()

    def relay(self, name: str) -> SyncRelay | None:
        return next((r for r in self.relays if r.endpoint.name == name), None)

    async def status(self) -> list[dict[str, Any]]:
        return [await relay.status() for relay in self.relays]
