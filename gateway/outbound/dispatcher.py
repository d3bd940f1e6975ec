"""One short code's sender: claim what is due, ask consent, pace it, hand it over, record.

The order of events for a message is what makes the guarantees:

1. *claim* (one transaction for a batch): the consent decision is taken inside the write
   transaction, so it sees every opt-out committed before it; allowed messages become
   ``sending`` and that is committed **before** any provider call;
2. wait for the rate limiters and a free slot, then check that no opt-out for the number
   was noticed since the claim (the in-memory :class:`OptOutWatch`): if one was, the message
   goes back to the queue to be decided again;
3. the provider call; its outcome is written in batches. A crash anywhere leaves the
   message ``queued`` (never handed over) or ``sending``; ``sending`` is looked up at the
   provider before it is ever sent again (:mod:`gateway.outbound.reconcile`, which runs
   beside the claims, so a provider whose look-ups fail never holds sending up).

When sends keep failing the provider's send link is down: claims stop, and one message at a
time goes as a probe until the provider answers again; then the messages that were backing
off go at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from consent import CarrierOptOuts, ConsentRules, Decision, Purpose, Verdict
from gateway.clock import Clock, isoformat
from gateway.config import OutboundConfig, ProviderConfig
from gateway.db import Database, Tx
from gateway.db import campaigns as campaign_sql
from gateway.db import outbound as sql
from gateway.links import OwnFaults, backoff, idle
from gateway.models import OutgoingSMS, StatusUpdate
from gateway.outbound.health import ProviderHealth
from gateway.outbound.metrics import OutboundMetrics
from gateway.outbound.outcomes import Claimed, Outcome
from gateway.outbound.ratelimit import RateLimiter
from gateway.outbound.reconcile import ReceiptSink, Reconciler
from gateway.outbound.watch import CampaignHolds, OptOutWatch
from gateway.profiles import ProfileStore
from gateway.providers import Provider, SendError, SendErrorKind
from gateway.providers.base import unexpected
from gateway.providers.error_codes import CONTACT_STOPPED

log = logging.getLogger(__name__)

#: How far ahead of the limiter a dispatcher claims, in seconds of sending.
CLAIM_AHEAD_SECONDS = 0.5
MAX_CLAIM = 200
#: On shutdown, how long sends in flight may take to come back before we stop waiting
#: (what has not come back is looked up after the restart).
DRAIN_SECONDS = 10.0


class Dispatcher:
    def __init__(self, *, short_code: str, db: Database, provider: Provider,
                 rules: ConsentRules, carrier: CarrierOptOuts, profiles: ProfileStore,
                 clock: Clock,
                 config: OutboundConfig, limiter: RateLimiter,
                 limiters: Callable[[str | None], Sequence[RateLimiter]],
                 watch: OptOutWatch, metrics: OutboundMetrics, status_url: str,
                 holds: CampaignHolds | None = None,
                 health: ProviderHealth | None = None, reads: RateLimiter | None = None,
                 on_receipts: ReceiptSink | None = None,
                 committed: Callable[[], None] = lambda: None) -> None:
        self.short_code, self.db, self.provider = short_code, db, provider
        self.rules, self.carrier, self.clock = rules, carrier, clock
        self.profiles = profiles
        self.config, self.limiter, self.limiters = config, limiter, limiters
        self.watch, self.metrics = watch, metrics
        self.holds = holds or CampaignHolds()
        self.status_url = status_url
        self.committed = committed
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._wake = asyncio.Event()
        self._outcomes: list[Outcome] = []
        self._have_outcomes = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pacing: set[asyncio.Task[None]] = set()  # waiting for the limiters
        self._prefetch: asyncio.Task[list[Claimed]] | None = None  # the next batch, claimed
        self._random = random.Random()
        self.validity = timedelta(minutes=config.validity_minutes)
        self.receipt_wait = timedelta(seconds=config.receipt_check_after_seconds)
        self.health = health or ProviderHealth(getattr(provider, "name", "provider"),
                                               ProviderConfig())
        self._recovered = False  # the send link came back: release what backs off
        self._faults = OwnFaults(f"dispatcher {short_code}")
        self._flush_faults = OwnFaults(f"dispatcher {short_code}: recording send outcomes",
                                       initial=0.5, cap=5.0)
        reads = reads or RateLimiter(ProviderConfig().reads_per_second)
        self.reconciler = Reconciler(self, reads=reads, on_receipts=on_receipts)

    # -- the loop ----------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Recover, then send until cancelled; outcomes still in memory are written first."""
        flusher = asyncio.create_task(self._flush_forever(), name=f"flush:{self.short_code}")
        reconciler: asyncio.Task[None] | None = None
        try:
            await self.recover()
            reconciler = asyncio.create_task(self.reconciler.run(),
                                             name=f"reconcile:{self.short_code}")
            while True:
                if not await self._faults.attempt(self.step):
                    await idle(self._wake, 0.25)
        finally:
            if reconciler is not None:
                reconciler.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reconciler
            await self.drain(flusher)

    def provider_recovered(self) -> None:
        """The provider answers sends again: what backs off after a failed send may go."""
        self._recovered = True
        self.wake()

    async def drain(self, flusher: asyncio.Task[None]) -> None:
        """Let sends in flight finish (their outcome must be written), then stop."""
        for task in list(self._pacing):  # not handed over yet: they go back to the queue
            task.cancel()
        if self._prefetch is not None:
            with contextlib.suppress(Exception):
                now = self.clock.now()
                for message in await self._prefetch:
                    self._record(Outcome(message, "recheck", now))
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=DRAIN_SECONDS)
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        with contextlib.suppress(Exception):
            await self.flush()

    async def recover(self) -> int:
        """Messages left ``sending`` by a crash are looked up once the provider has had time
        to finish any request it was still working on."""
        at = self.clock.now() + timedelta(seconds=self.config.reconcile_after_seconds)
        count = await self.db.write(lambda tx: sql.orphaned_sending(tx, self.short_code, at))
        if count:
            log.warning("%d message(s) from %s were being sent when the gateway stopped: they "
                        "will be looked up at the provider before any resend", count,
                        self.short_code)
        return count

    async def step(self) -> bool:
        """One round: one claimed batch handed over (a single probe while the provider's
        send link is down). Look-ups run beside it, never in front of it."""
        if self._recovered:
            self._recovered = False
            released = await self.db.write(
                lambda tx: sql.release_retries(tx, self.short_code, self.clock.now()))
            if released:
                log.info("%d message(s) from %s backing off after failed sends go now",
                         released, self.short_code)
        probe = False
        if self.health.send.down:
            if self._prefetch is not None:  # claimed before the outage: back to the queue
                batch, self._prefetch = await self._prefetch, None
                now = self.clock.now()
                for message in batch:
                    self._record(Outcome(message, "recheck", now, reason="provider_down"))
                return False
            if self.health.send.next_try_in() > 0:
                return False
            if not await self._anything_due() and not await self.db.write(
                    lambda tx: sql.release_next_retry(tx, self.short_code, self.clock.now())):
                return False  # nothing to probe with
            if not self.health.send.may_try():
                return False
            probe = True
            batch = await self.db.write(lambda tx: self._claim(tx, 1))
        elif self._prefetch is not None:
            batch, self._prefetch = await self._prefetch, None
        elif await self._anything_due():
            batch = await self.db.write(self._claim)
        else:
            return False
        self.committed()
        if not probe and len(batch) >= self._claim_size():
            # A full batch: more is probably waiting. Claim it while this one goes out, so
            # the provider never waits for our commit.
            self._prefetch = asyncio.create_task(self.db.write(self._claim))
        for i, message in enumerate(batch):
            try:
                await self._slots.acquire()
            except asyncio.CancelledError:  # stopping: what was not handed over goes back
                now = self.clock.now()
                for rest in batch[i:]:
                    self._record(Outcome(rest, "recheck", now))
                raise
            task = asyncio.create_task(self._send(message, probe=probe))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return bool(batch)

    async def _anything_due(self) -> bool:
        row = await self.db.fetchone(
            "SELECT EXISTS (SELECT 1 FROM outbound_messages WHERE from_number = ?1"
            " AND status = 'queued' AND next_attempt_at IS NULL) OR EXISTS (SELECT 1"
            " FROM outbound_messages WHERE from_number = ?1 AND next_attempt_at IS NOT NULL"
            " AND next_attempt_at <= ?2 AND status IN ('queued', 'deferred'))",
            (self.short_code, isoformat(self.clock.now())))
        return bool(row and row[0])

    # -- claim: consent and validity, decided inside the write transaction -------------

    def _claim_size(self) -> int:
        return max(1, min(MAX_CLAIM, int(self.limiter.current_rate() * CLAIM_AHEAD_SECONDS)))

    async def _claim(self, tx: Tx, limit: int | None = None) -> list[Claimed]:
        claimed_at = time.monotonic()
        now = self.clock.now()
        stamp = isoformat(now)
        await sql.release_due(tx, self.short_code, now)
        rows = await sql.ready(tx, self.short_code, limit or self._claim_size())
        if not rows:
            return []
        live = [r for r in rows if datetime.fromisoformat(r["expires_at"]) > now
                and r["program_id"] in self.rules.policies]
        campaigns = await campaign_sql.statuses(
            tx, sorted({r["campaign_id"] for r in live if r["campaign_id"]}))
        stopped = {r["id"]: campaigns.get(r["campaign_id"]) for r in live
                   if campaigns.get(r["campaign_id"]) in ("paused", "cancelled")}
        live = [r for r in live if r["id"] not in stopped]
        decisions = await self.rules.decide_many(
            tx, [(r["to_number"], r["program_id"], Purpose(r["purpose"])) for r in live], now)
        verdicts: dict[int, Decision] = {r["id"]: d for r, d in
                                         zip(live, decisions, strict=True)}
        sending, waiting, final, events = [], [], [], []
        out, moved = [], []
        for row in rows:
            mid, expires = row["id"], datetime.fromisoformat(row["expires_at"])
            decision = verdicts.get(mid)
            if stopped.get(mid) == "paused":
                # Held: deferred with no time, until the campaign resumes.
                waiting.append(("deferred", "paused", None, None, None, stamp, mid))
                events.append((mid, stamp, "held", "deferred", None,
                               sql.detail(reason="paused")))
            elif stopped.get(mid) == "cancelled":
                final.append(("cancelled", "campaign_cancelled", None, None, stamp, mid))
                events.append((mid, stamp, "cancelled", "cancelled", None,
                               sql.detail(reason="campaign_cancelled")))
            elif decision is None and row["program_id"] not in self.rules.policies:
                final.append(("cancelled", "unknown_program", None, None, stamp, mid))
                events.append((mid, stamp, "cancelled", "cancelled", None, sql.detail(
                    reason="unknown_program", program=row["program_id"])))
            elif decision is None:
                final.append(("expired", "validity", None, None, stamp, mid))
                events.append((mid, stamp, "expired", "expired", None,
                               sql.detail(reason="validity", expires_at=row["expires_at"])))
            elif decision.verdict is Verdict.DENY or (
                    decision.reason == "frequency_cap" and row["campaign_id"]):
                # A campaign skips a recipient over the cap rather than send days late.
                final.append(("cancelled", decision.reason, None, None, stamp, mid))
                events.append((mid, stamp, "cancelled", "cancelled", None,
                               sql.detail(reason=decision.reason)))
            elif decision.verdict is Verdict.DEFER:
                assert decision.not_before is not None
                if not row["fixed_expiry"] and decision.not_before >= expires:
                    expires = decision.not_before + self.validity
                    moved.append((isoformat(expires), mid))
                if decision.not_before >= expires:
                    final.append(("expired", decision.reason, None, None, stamp, mid))
                    events.append((mid, stamp, "expired", "expired", None, sql.detail(
                        reason=decision.reason, may_go_at=isoformat(decision.not_before))))
                    continue
                until = isoformat(decision.not_before)
                waiting.append(("deferred", decision.reason, until, None, None, stamp, mid))
                events.append((mid, stamp, "deferred", "deferred", None,
                               sql.detail(reason=decision.reason, until=until)))
            else:
                sending.append((stamp, decision.opt_in_event_id, mid))
                events.append((mid, stamp, "sending", "sending", None,
                               sql.detail(attempt=row["attempts"] + 1)))
                out.append(Claimed(mid, row["to_number"], row["body"], row["program_id"],
                                   row["segments"] or 1, row["attempts"] + 1, expires,
                                   claimed_at, row["campaign_id"]))
        await sql.set_sending(tx, sending)
        await sql.set_waiting(tx, waiting)
        await sql.set_expiry(tx, moved)
        await sql.set_final(tx, final)
        await sql.add_events(tx, events)
        self.metrics.claimed(self.short_code, len(out), len(final), len(waiting))
        return out

    # -- hand-over ---------------------------------------------------------------------

    def _sms(self, message: Claimed) -> OutgoingSMS:
        return OutgoingSMS(to_number=message.to_number, from_number=self.short_code,
                           body=message.body, status_callback=f"{self.status_url}{message.id}")

    async def _send(self, message: Claimed, *, probe: bool = False) -> None:
        task = asyncio.current_task()
        self._pacing.add(task)  # type: ignore[arg-type]
        try:
            # Paced here, in the task, right before the call: the limiter's clock must be
            # the hand-over's, or a stall of the loop would bunch messages up on the wire.
            # (Tasks reach the limiters' locks in claim order, so priority order holds.)
            limiters = (self.limiter, *self.limiters(message.program_id))
            entries = [await limiter.acquire(message.segments) for limiter in limiters]
            self._pacing.discard(task)  # type: ignore[arg-type]
            if (self.watch.noticed_since(message.to_number, message.claimed)
                    or self.holds.stopped(message.campaign_id)):
                # An opt-out for this number arrived after the claim, or the campaign was
                # paused or cancelled: decide again.
                self._record(Outcome(message, "recheck", self.clock.now()))
                return
            if self.health.send.down and not probe:
                # The provider went down while this one waited its turn: keep it queued
                # rather than add to the failures.
                for limiter, entry in zip(limiters, entries, strict=True):
                    limiter.settle(entry)
                self._record(Outcome(message, "recheck", self.clock.now(),
                                     reason="provider_down"))
                return
            started = time.perf_counter()
            try:
                try:
                    result = await self.provider.send(self._sms(message))
                finally:
                    for limiter, entry in zip(limiters, entries, strict=True):
                        limiter.settle(entry)
            except Exception as exc:
                # Adapters raise only SendError; anything else is a bug there, classified
                # all the same (its outcome unknown) rather than let out of the pipeline.
                error = exc if isinstance(exc, SendError) else unexpected(exc, "send")
                self.metrics.provider_latency(time.perf_counter() - started)
                if error.provider_down:
                    self.health.send.failed(str(error), error.kind.value)
                else:
                    self.health.send.succeeded()
                self._record(self._failure(message, error))
                return
            self.health.send.succeeded()
            self.metrics.provider_latency(time.perf_counter() - started)
            self._record(Outcome(message, "sent", self.clock.now(), sid=result.provider_sid,
                                 segments=result.num_segments))
        except asyncio.CancelledError:
            if task in self._pacing:  # stopped before the hand-over: back to the queue
                self._record(Outcome(message, "recheck", self.clock.now()))
            else:  # cut off mid-call: it may have been accepted
                self._record(Outcome(message, "unknown", self.clock.now(), error=SendError(
                    SendErrorKind.INTERRUPTED, detail="the gateway stopped mid-call")))
            raise
        finally:
            self._pacing.discard(task)  # type: ignore[arg-type]
            self._slots.release()

    def _failure(self, message: Claimed, exc: SendError) -> Outcome:
        now = self.clock.now()
        if exc.kind is SendErrorKind.RATE_LIMITED:
            self.limiter.slow_down(self.config.slow_down_factor, self.config.slow_down_seconds)
            log.warning("provider says 429 for %s: slowing to %.0f%% for %gs", self.short_code,
                        self.config.slow_down_factor * 100, self.config.slow_down_seconds)
        if not exc.transient:
            return Outcome(message, "failed", now, error=exc)
        if exc.outcome_unknown:
            return Outcome(message, "unknown", now, error=exc)
        return Outcome(message, "retry", now, error=exc)

    def _record(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._have_outcomes.set()

    # -- outcomes, written in batches --------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            await self._have_outcomes.wait()
            self._have_outcomes.clear()
            try:
                await self.flush()
            except Exception as exc:
                # What was sent must be recorded: keep trying, but not in a tight loop.
                await asyncio.sleep(self._flush_faults.failed(exc))
                self._have_outcomes.set()
            else:
                self._flush_faults.ok()

    async def flush(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes:
            return
        try:
            await self.db.write(lambda tx: self._write(tx, outcomes))
        except BaseException:
            self._outcomes[:0] = outcomes  # nothing was written: keep them for the next try
            raise
        self.committed()
        self.metrics.outcomes(self.short_code, outcomes)
        if any(o.kind in ("recheck", "retry") for o in outcomes):
            self.wake()

    def backoff(self, attempts: int) -> timedelta:
        """Exponential, capped, with jitter (half fixed, half random)."""
        return timedelta(seconds=backoff(attempts, self.config.retry_initial_seconds,
                                         self.config.retry_max_seconds, self._random))

    async def _write(self, tx: Tx, outcomes: Sequence[Outcome]) -> None:
        sent, waiting, final, unknown, events = [], [], [], [], []
        for o in outcomes:
            m, stamp = o.message, isoformat(o.at)
            code = o.error.provider_code if o.error else None
            text = o.error.detail if o.error else None
            kind = o.error.kind.value if o.error else None
            if o.kind == "sent":
                assert o.sid is not None
                sent.append((self.provider.name, o.sid, o.segments, stamp,
                             isoformat(o.at + self.receipt_wait), m.id))
                events.append((m.id, stamp, "sent", "sent", None,
                               sql.detail(provider_sid=o.sid)))
            elif o.kind == "failed":
                final.append(("failed", o.reason or kind, code, text, stamp, m.id))
                events.append((m.id, stamp, "failed", "failed", code,
                               sql.detail(error=kind, reason=o.reason, message=text)))
            elif o.kind == "unknown":
                look = o.lookup_at or (
                    o.at + timedelta(seconds=self.config.reconcile_after_seconds))
                unknown.append((isoformat(look), code, text, stamp,
                                int(o.lookup_at is not None), m.id))
                self.reconciler.expect(look)
                events.append((m.id, stamp, "lookup_failed" if o.lookup_at else
                               "outcome_unknown", "sending", code, sql.detail(
                                   error=kind, message=text, lookup_at=isoformat(look))))
            elif o.kind == "recheck":
                why = o.reason or ("campaign_stopped" if self.holds.stopped(m.campaign_id)
                                   else "opt_out_noticed")
                waiting.append(("queued", why, None, None, None, stamp, m.id))
                events.append((m.id, stamp, "returned", "queued", None,
                               sql.detail(reason=why)))
            else:  # retry (also a look-up that found nothing)
                self._retry(o, waiting, final, events)
        await sql.set_sent(tx, sent)
        await self.profiles.on_outbound(tx, [
            (o.message.to_number, {
                "message_id": o.message.id, "provider": self.provider.name,
                "provider_sid": o.sid, "short_code": self.short_code,
                "program": o.message.program_id, "body": o.message.body,
                "segments": o.segments or o.message.segments})
            for o in outcomes if o.kind == "sent"], outcomes[0].at)
        await sql.set_final(tx, final)
        await sql.set_waiting(tx, waiting)
        await sql.set_reconcile(tx, unknown)
        await sql.add_events(tx, events)
        for o in outcomes:
            if o.kind == "failed" and o.contact_stopped:
                await self._carrier_opt_out(tx, o)

    def _retry(self, o: Outcome, waiting: list[Any], final: list[Any], events: list[Any]
               ) -> None:
        m, stamp = o.message, isoformat(o.at)
        code = o.error.provider_code if o.error else None
        text = o.error.detail if o.error else None
        kind = o.error.kind.value if o.error else "not_found"
        when = o.at + self.backoff(m.attempts)
        if when >= m.expires_at:
            final.append(("expired", kind, code, text, stamp, m.id))
            events.append((m.id, stamp, "expired", "expired", code,
                           sql.detail(reason=kind, message=text)))
            return
        waiting.append(("queued", "retry", isoformat(when), code, text, stamp, m.id))
        events.append((m.id, stamp, "retry", "queued", code, sql.detail(
            error=kind, message=text, attempt=m.attempts, next_attempt_at=isoformat(when))))

    async def _carrier_opt_out(self, tx: Tx, o: Outcome) -> None:
        assert o.error is not None
        await self.carrier.opt_out(tx, o.message.to_number, self.short_code, StatusUpdate(
            provider=self.provider.name, provider_sid=f"send:{o.message.id}",
            status="failed", received_at=o.at, error_code=CONTACT_STOPPED,
            params={"To": o.message.to_number, "From": self.short_code}))
