"""What the provider knows that we do not, found out beside the sending, never in front of it.

Two jobs per short code, paced by the provider's read rate (never the send rate):

- **Look-ups.** A hand-over whose outcome is unknown (a timeout, a 5xx, a crash mid-call) is
  looked up in the provider's records before it is ever sent again: found means sent, not
  found means queued again. A look-up that fails backs off per message; look-ups that keep
  failing put the provider's look-up link down, and then only a probe goes at a time. A
  message still unknown ``unknown_outcome_minutes`` after its hand-over follows the
  operator's policy: ``give_up`` (failed, reason ``outcome_unknown``: at most once) or
  ``resend`` (queued again: at least once).
- **Receipts.** Twilio does not retry a status callback, so the receipts of messages sent
  while the gateway was down are otherwise lost. A message ``sent`` with no final status
  ``receipt_check_after_seconds`` later has its status fetched, then again at doubling
  intervals, until it is final or ``receipt_max_age_hours`` old. A final status enters
  exactly as a callback would (the delivery log, the timeline, carrier opt-outs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gateway.clock import isoformat
from gateway.db import Row, Tx
from gateway.db import outbound as sql
from gateway.links import OwnFaults, backoff, idle
from gateway.models import StatusUpdate
from gateway.outbound.outcomes import Claimed, Outcome
from gateway.outbound.ratelimit import RateLimiter
from gateway.phone import mask
from gateway.providers import SendError, SendErrorKind
from gateway.providers.base import ProviderStatus, unexpected

if TYPE_CHECKING:
    from gateway.outbound.dispatcher import Dispatcher

log = logging.getLogger(__name__)

#: Stores fetched receipts: (transaction, [(receipt, our message id)]).
ReceiptSink = Callable[[Tx, Sequence[tuple[StatusUpdate, int | None]]], Awaitable[None]]

#: A look-up accepts a provider message created this long before our hand-over (clock skew).
LOOKUP_SLACK = timedelta(minutes=2)
LOOKUP_BATCH = 50
RECEIPT_BATCH = 100
#: Status fetches in flight at once, per short code.
FETCHES_IN_FLIGHT = 8
#: With nothing due, look again this often (new unknowns come with a wake-up).
POLL_SECONDS = 1.0


class Reconciler:
    def __init__(self, dispatcher: Dispatcher, *, reads: RateLimiter,
                 on_receipts: ReceiptSink | None) -> None:
        self.d = dispatcher
        self.reads = reads
        self.on_receipts = on_receipts
        self._wake = asyncio.Event()
        self._recovered = False
        self._fetch_slots = asyncio.Semaphore(FETCHES_IN_FLIGHT)
        self._soonest: datetime | None = None  # the next look-up time we know of
        self._faults = OwnFaults(f"reconciler {dispatcher.short_code}")

    def wake(self) -> None:
        self._wake.set()

    def expect(self, at: datetime) -> None:
        """A look-up is due at `at` (an unknown outcome, a failed look-up): be awake then,
        rather than at the next poll."""
        if self._soonest is None or at < self._soonest:
            self._soonest = at

    def lookups_recovered(self) -> None:
        """Look-ups are answered again: those backing off after a failed one go now."""
        self._recovered = True
        self.wake()

    async def run(self) -> None:
        while True:
            if not await self._faults.attempt(self.step):
                wait = POLL_SECONDS
                if self._soonest is not None:
                    ahead = (self._soonest - self.d.clock.now()).total_seconds()
                    if ahead <= 0:
                        self._soonest = None
                    wait = min(wait, max(ahead, 0.01))
                for link in (self.d.health.lookup, self.d.health.fetch):
                    if link.down:
                        wait = min(wait, max(link.next_try_in(), 0.05))
                await idle(self._wake, wait)

    async def step(self) -> bool:
        if self._recovered:
            self._recovered = False
            await self.d.db.write(
                lambda tx: sql.release_lookups(tx, self.d.short_code, self.d.clock.now()))
        looked = await self.look_ups()
        fetched = await self.receipts()
        return looked or fetched

    # -- look-ups of unknown outcomes --------------------------------------------------

    async def look_ups(self) -> bool:
        d = self.d
        rows = await sql.due_lookups(d.db, d.short_code, d.clock.now(), LOOKUP_BATCH)
        link = d.health.lookup
        taken = {o.sid for o in d._outcomes if o.sid}
        done = 0
        if link.down:
            # Only probes go; what is past its deadline meets the policy without waiting.
            waiting = []
            for row in rows:
                message, handed = self._message(row), _handed(row)
                if self._give_up_or_resend(message, handed, None):
                    done += 1
                else:
                    waiting.append(row)
            if link.next_try_in() == 0:
                # The probe: a due look-up, or else the next one backing off (its own wait
                # would hold the probes up to the cap).
                probe = waiting[0] if waiting else await sql.next_failed_lookup(
                    d.db, d.short_code)
                if probe is not None and link.may_try():
                    await self._look_up(self._message(probe), probe, _handed(probe), taken)
                    done += 1
        else:
            for row in rows:
                if link.may_try():
                    await self._look_up(self._message(row), row, _handed(row), taken)
                    done += 1
                elif self._give_up_or_resend(self._message(row), _handed(row), None):
                    done += 1  # past its deadline: no look-up is waited for
        if done:
            await d.flush()
        return done > 0

    def _message(self, row: Row) -> Claimed:
        return Claimed(row["id"], row["to_number"], row["body"], row["program_id"],
                       row["segments"] or 1, row["attempts"],
                       datetime.fromisoformat(row["expires_at"]), time.monotonic(),
                       row["campaign_id"])

    async def _look_up(self, message: Claimed, row: Row, handed: datetime,
                       taken: set[str]) -> None:
        d = self.d
        entry = await self.reads.acquire(1)
        try:
            found = await d.provider.lookup(d._sms(message), handed - LOOKUP_SLACK)
        except Exception as exc:
            error = exc if isinstance(exc, SendError) else unexpected(exc, "look-up")
            d.health.lookup.failed(str(error), error.kind.value)
            if not self._give_up_or_resend(message, handed, error):
                now = d.clock.now()
                wait = backoff(row["lookups"] + 1, d.config.retry_initial_seconds,
                               d.config.retry_max_seconds)
                log.debug("look-up of message #%d failed (%s): again in %.1fs", message.id,
                          error, wait)
                d._record(Outcome(message, "unknown", now, error=error,
                                   lookup_at=now + timedelta(seconds=wait)))
            return
        finally:
            self.reads.settle(entry)
        d.health.lookup.succeeded()
        now = d.clock.now()
        candidates = [m for m in found if m.body == message.body and m.sid not in taken]
        known = await sql.known_sids(d.db, d.provider.name, [m.sid for m in candidates])
        match = next((m for m in candidates if m.sid not in known), None)
        if match is not None:
            taken.add(match.sid)
            log.info("message #%d to %s was accepted before all: %s", message.id,
                     mask(message.to_number), match.sid)
            d._record(Outcome(message, "sent", now, sid=match.sid,
                               segments=match.num_segments))
        else:
            log.info("message #%d to %s never reached %s: queued again", message.id,
                     mask(message.to_number), d.provider.name)
            d._record(Outcome(message, "retry", now))

    def _give_up_or_resend(self, message: Claimed, handed: datetime,
                           error: SendError | None) -> bool:
        """A message whose outcome cannot be learnt in time: its validity ended (failed), or
        it is past `unknown_outcome_minutes` (the policy). False: neither yet."""
        d = self.d
        now = d.clock.now()
        kind = error.kind if error else None
        if now >= message.expires_at:
            d._record(Outcome(message, "failed", now, reason="outcome_unknown",
                               error=_error(kind, "its validity ended while its outcome was "
                                                  "unknown")))
            return True
        minutes = d.config.unknown_outcome_minutes
        if now - handed < timedelta(minutes=minutes):
            return False
        if d.config.unknown_outcome == "resend":
            log.warning("message #%d to %s: outcome unknown for %g min, sending it again "
                        "(outbound.unknown_outcome = resend)", message.id,
                        mask(message.to_number), minutes)
            d._record(Outcome(message, "retry", now, error=_error(
                kind, f"outcome unknown for {minutes:g} min: sent again "
                      "(outbound.unknown_outcome = resend)")))
        else:
            log.warning("message #%d to %s: outcome unknown for %g min, given up "
                        "(outbound.unknown_outcome = give_up)", message.id,
                        mask(message.to_number), minutes)
            d._record(Outcome(message, "failed", now, reason="outcome_unknown", error=_error(
                kind, f"outcome unknown for {minutes:g} min: given up, never sent twice "
                      "(outbound.unknown_outcome = give_up)")))
        return True

    # -- receipts that never came ------------------------------------------------------

    async def receipts(self) -> bool:
        d = self.d
        rows = await sql.due_receipts(d.db, d.short_code, d.clock.now(), RECEIPT_BATCH)
        if not rows:
            return False
        link = d.health.fetch
        chosen = []
        for row in rows:
            if not link.may_try():
                break
            chosen.append(row)
            if link.down:
                break  # a probe goes alone
        if not chosen:
            return False
        results = await asyncio.gather(*(self._fetch(row["provider_sid"]) for row in chosen))
        now = d.clock.now()
        updates: list[tuple[StatusUpdate, int | None]] = []
        checks: list[tuple[str | None, int]] = []
        for row, result in zip(chosen, results, strict=True):
            if isinstance(result, ProviderStatus) and result.final:
                params = {"MessageSid": result.sid, "MessageStatus": result.status,
                          "To": row["to_number"], "From": row["from_number"],
                          "Source": "status fetch"}
                if result.error_code:
                    params["ErrorCode"] = result.error_code
                updates.append((StatusUpdate(
                    provider=row["provider"], provider_sid=row["provider_sid"],
                    status=result.status, received_at=now, error_code=result.error_code,
                    params=params), row["id"]))
                checks.append((None, row["id"]))
            elif isinstance(result, SendError) and not result.transient:
                checks.append((None, row["id"]))  # the provider has no such message
            else:
                checks.append((self._next_check(row, now), row["id"]))

        async def record(tx: Tx) -> None:
            if updates and self.on_receipts is not None:
                await self.on_receipts(tx, updates)
            await sql.set_receipt_checks(tx, checks)

        await d.db.write(record)
        if updates:
            log.info("%d receipt(s) for %s fetched from %s", len(updates), d.short_code,
                     d.provider.name)
            d.committed()
        return True

    async def _fetch(self, sid: str) -> ProviderStatus | SendError:
        d = self.d
        async with self._fetch_slots:
            entry = await self.reads.acquire(1)
            try:
                result = await d.provider.fetch(sid)
            except Exception as exc:
                error = exc if isinstance(exc, SendError) else unexpected(exc, "status fetch")
                if error.provider_down:
                    d.health.fetch.failed(str(error), error.kind.value)
                else:
                    d.health.fetch.succeeded()
                log.debug("status fetch of %s failed: %s", sid, error)
                return error
            finally:
                self.reads.settle(entry)
        d.health.fetch.succeeded()
        return result

    def _next_check(self, row: Row, now: datetime) -> str | None:
        """Doubling from the first wait up to the re-check cap; None once too old."""
        config = self.d.config
        sent = datetime.fromisoformat(row["sent_at"])
        if now - sent >= timedelta(hours=config.receipt_max_age_hours):
            return None
        wait = min(config.receipt_check_after_seconds * 2 ** min(row["receipt_checks"], 30),
                   config.receipt_recheck_max_seconds)
        return isoformat(now + timedelta(seconds=wait))



def _handed(row: Row) -> datetime:
    return datetime.fromisoformat(row["sending_at"] or row["created_at"])


def _error(kind: SendErrorKind | None, detail: str) -> SendError:
    return SendError(kind or SendErrorKind.UNEXPECTED, detail=detail)
