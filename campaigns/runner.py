"""One run of a push campaign: fix the recipients, then stream them into the outbound pipeline.

Every step is its own short transaction that also records how far it got, so a crash at any
point resumes where it stopped and never queues a recipient twice:

1. *materialise*: the audience (the segment, intersected with "opted in to the program"),
   in phone order, chunk by chunk, each recipient with its A/B variant;
2. *queue*: recipients in batches, rendered, as outbound messages (consent, quiet hours and
   caps are decided by the dispatcher when each one goes); only while few of the campaign's
   messages wait ready for the sender, so memory and the send queue stay flat;
3. *sending*: wait until none of the campaign's messages is pending, then complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from campaigns.model import Campaign
from gateway.clock import Clock
from gateway.config import CampaignsConfig
from gateway.db import Database, Tx
from gateway.db import campaigns as sql
from gateway.db.profiles import get_many as get_profiles
from gateway.db.segments import compile_segment
from gateway.outbound import NewMessage, Outbox, QueueRefused
from gateway.profiles import Profile, ProfileStore, derived_time_zones
from gateway.templates import profile_values, render

log = logging.getLogger(__name__)

#: How often a run that waits (for the sender, or for its last messages) looks again.
POLL_SECONDS = 0.1
SETTLE_POLL_SECONDS = 1.0


class Stopped(Exception):
    """The campaign was paused or cancelled: the run waits or ends."""


@dataclass
class RunState:
    run_id: int
    status: str
    last_seq: int = 0  # recipients up to here were looked at this session


class Runner:
    def __init__(self, *, db: Database, outbox: Outbox, profiles: ProfileStore, clock: Clock,
                 config: CampaignsConfig, short_codes: dict[str, str],
                 wake: Callable[[str], None],
                 finished: Callable[[str, int], Awaitable[None]]) -> None:
        self.db, self.outbox, self.profiles, self.clock = db, outbox, profiles, clock
        self.config, self.short_codes = config, short_codes
        self.wake, self.finished = wake, finished

    async def run(self, campaign: Campaign, run_id: int, go: asyncio.Event) -> None:
        """Drive one run to its end; `go` is clear while the campaign is paused."""
        row = await sql.get_run(self.db, run_id)
        assert row is not None
        state = RunState(run_id, row["status"])
        where, params = compile_segment(campaign.spec.audience) if campaign.spec.audience \
            else ("1", [])
        short_code = self.short_codes[campaign.program_id]
        while state.status in sql.UNFINISHED:
            await go.wait()
            try:
                if state.status == "materialising":
                    await self._materialise(campaign, state, where, params)
                elif state.status == "queuing":
                    await self._queue_next(campaign, state, short_code, go)
                else:
                    await self._settle(campaign, state)
            except Stopped:
                current = await sql.get(self.db, campaign.id)
                if current is None or current["status"] == "cancelled":
                    return
                await asyncio.sleep(POLL_SECONDS)  # paused: wait for `go`
        await self.finished(campaign.id, run_id)

    async def _materialise(self, campaign: Campaign, state: RunState, where: str,
                           params: list[object]) -> None:
        chunk = self.config.materialise_chunk

        async def step(tx: Tx) -> int:
            await self._check_active(tx, campaign.id)
            added = await sql.materialise_chunk(tx, state.run_id, campaign.program_id, where,
                                                params, campaign.spec.cutoffs, chunk)
            if added < chunk:
                await sql.set_run(tx, state.run_id, "queuing")
            return added

        added = await self.db.write(step)
        if added < chunk:
            state.status = "queuing"
            run = await sql.get_run(self.db, state.run_id)
            log.info("campaign %s run %d: %d recipients", campaign.id, state.run_id,
                     run["audience"] if run else 0)

    async def _queue_next(self, campaign: Campaign, state: RunState, short_code: str,
                          go: asyncio.Event) -> None:
        ahead = self.config.queue_ahead
        while await sql.ready_count(self.db, short_code, campaign.id, ahead) >= ahead:
            if not go.is_set():
                raise Stopped
            await asyncio.sleep(POLL_SECONDS)
        rows = await sql.next_recipients(self.db, state.run_id, state.last_seq,
                                         self.config.batch_size)
        if not rows:
            await self.db.write(lambda tx: sql.set_run(tx, state.run_id, "sending"))
            state.status = "sending"
            return
        phones = [r["phone"] for r in rows]
        profiles = {r["phone"]: Profile.from_row(r) for r in await get_profiles(self.db, phones)}
        now = self.clock.now()
        messages, seqs, skipped, timeline = [], [], [], []
        spec = campaign.spec
        for row in rows:
            phone, variant = row["phone"], spec.variants[row["variant"]]
            profile = profiles.get(phone)
            message = NewMessage(
                to_number=phone, program_id=campaign.program_id, purpose="marketing",
                body=render(variant.template, profile_values(profile, phone)),
                campaign_id=campaign.id, validity=spec.validity,
                not_before=self._local_start(campaign, profile, phone, now))
            try:
                self.outbox.check(message)
            except QueueRefused as exc:
                log.warning("campaign %s: recipient #%d not queued: %s", campaign.id,
                            row["seq"], exc)
                skipped.append(("message_refused", row["seq"]))
                continue
            messages.append(message)
            seqs.append(row["seq"])
            timeline.append((phone, "campaign.queued", {
                "campaign": campaign.id, "name": campaign.name, "run": state.run_id,
                "variant": variant.name}))

        async def step(tx: Tx) -> None:
            await self._check_active(tx, campaign.id)
            ids = await self.outbox.queue_many(tx, messages, now)
            await sql.mark_queued(tx, state.run_id, list(zip(ids, seqs, strict=True)))
            await sql.mark_skipped(tx, state.run_id, skipped)
            await self.profiles.on_campaign(tx, [(p, t, {**d, "message_id": i}) for
                                                 (p, t, d), i in zip(timeline, ids,
                                                                     strict=True)], now)

        await self.db.write(step)
        state.last_seq = rows[-1]["seq"]
        self.wake(short_code)

    async def _settle(self, campaign: Campaign, state: RunState) -> None:
        run = await sql.get_run(self.db, state.run_id)
        if run is None or run["status"] not in sql.UNFINISHED:
            raise Stopped  # cancelled
        if await sql.has_pending(self.db, campaign.id):
            await asyncio.sleep(SETTLE_POLL_SECONDS)
            return
        state.status = "completed"

    @staticmethod
    async def _check_active(tx: Tx, campaign_id: str) -> None:
        """Inside the write: a pause or cancel committed a moment ago stops this step."""
        row = await sql.statuses(tx, [campaign_id])
        if row.get(campaign_id) != "running":
            raise Stopped

    @staticmethod
    def _local_start(campaign: Campaign, profile: Profile | None, phone: str,
                     now: datetime) -> datetime | None:
        schedule = campaign.spec.schedule
        if schedule is None or schedule.kind != "local_time":
            return None
        zones = profile.effective_time_zones if profile else derived_time_zones(phone)
        start = schedule.local_start(zones)
        return start if start and start > now else None
