"""Campaigns as the API and CLI see them: save, preview, schedule, pause, resume, cancel,
stats, and the background life of runs.

The database is the source of truth; APScheduler only arms the next run of each scheduled
campaign in memory and is re-armed from the database at every start. A run missed while the
gateway was down starts at once if it is within the grace period, else it is recorded as
``missed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from campaigns.model import Campaign, Spec, parse_schedule, parse_spec
from campaigns.runner import Runner
from campaigns.stats import campaign_stats
from gateway.clock import Clock, isoformat
from gateway.config import Config
from gateway.db import Database, Tx, dumps
from gateway.db import campaigns as sql
from gateway.db.profiles import get_many as get_profiles
from gateway.db.segments import compile_segment
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.outbound import CampaignHolds, Outbox
from gateway.profiles import Profile, ProfileStore
from gateway.sms import non_gsm, segment
from gateway.templates import profile_values, render

log = logging.getLogger(__name__)

SAMPLES = 5
#: Recorded at most this many missed runs of a recurring campaign at one start.
MAX_MISSED = 50


def new_id(at: datetime) -> str:
    """Sortable by creation time (the list is newest first), unique by its random tail."""
    return f"cmp_{int(at.timestamp() * 1000):013d}{secrets.token_hex(3)}"


class Campaigns:
    def __init__(self, config: Config, db: Database, profiles: ProfileStore, clock: Clock,
                 holds: CampaignHolds, outbox: Outbox, *,
                 wake: Callable[[str], None] = lambda code: None,
                 on_change: Callable[[Campaign], None] = lambda c: None,
                 check_keywords: Callable[[Spec, str | None], None] = lambda s, c: None
                 ) -> None:
        self.config, self.db, self.clock, self.holds = config, db, clock, holds
        self.on_change = on_change  # pull campaigns: the keyword table follows
        self.check_keywords = check_keywords  # pull campaigns: keywords must be free
        self.grace = timedelta(minutes=config.campaigns.missed_run_grace_minutes)
        self.short_codes = {p.id: p.short_code for p in config.programs}
        self.outbox = outbox
        self.runner = Runner(db=db, outbox=self.outbox, profiles=profiles, clock=clock,
                             config=config.campaigns, short_codes=self.short_codes,
                             wake=wake, finished=self._finished)
        self._scheduler: AsyncIOScheduler | None = None
        self._runs: dict[int, asyncio.Task[None]] = {}
        self._go: dict[str, asyncio.Event] = {}

    # -- reading -------------------------------------------------------------------------

    async def get(self, campaign_id: str) -> Campaign:
        row = await sql.get(self.db, campaign_id)
        if row is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        return Campaign.from_row(row, self.config)

    async def list(self, *, status: str | None = None, kind: str | None = None,
                   before: str = "", limit: int = 50) -> list[Campaign]:
        rows = await sql.search(self.db, status=status, kind=kind, before_id=before,
                                limit=limit)
        return [Campaign.from_row(r, self.config) for r in rows]

    async def runs(self, campaign_id: str) -> list[dict[str, Any]]:
        return [{k: r[k] for k in ("id", "scheduled_for", "status", "audience", "started_at",
                                   "finished_at")}
                for r in await sql.runs(self.db, campaign_id)]

    async def stats(self, campaign_id: str) -> dict[str, Any]:
        campaign = await self.get(campaign_id)
        return await campaign_stats(self.db, campaign, self.short_codes[campaign.program_id],
                                    self.config.campaigns.attribution_hours)

    async def add_codes(self, campaign_id: str, codes: list[str]) -> dict[str, Any]:
        """Coupon codes for a pull campaign's pool; returns how many were new and the pool."""
        campaign = await self.get(campaign_id)
        if campaign.kind != "pull":
            raise Conflict("codes: only a pull campaign hands out codes")
        added = await self.db.write(lambda tx: sql.add_codes(tx, campaign_id, codes))
        pool = {k: v for k, v in (await self.stats(campaign_id)).items()
                if k.startswith("codes")}
        return {"added": added, **pool}

    # -- saving --------------------------------------------------------------------------

    async def create(self, payload: Any) -> Campaign:
        spec = parse_spec(payload, self.config)
        if spec.kind == "pull":
            self.check_keywords(spec, None)
        now = self.clock.now()
        cid = new_id(now)
        stamp = isoformat(now)
        await self.db.write(lambda tx: sql.insert(tx, (
            cid, spec.name, spec.kind, spec.program_id, "draft", dumps(payload_of(spec)),
            None, stamp, stamp)))
        return await self.get(cid)

    async def update(self, campaign_id: str, changes: Any) -> Campaign:
        """Drafts only: what is scheduled or running is what was reviewed."""
        if not isinstance(changes, dict):
            raise BadRequest("the body must be a JSON object")
        current = await self.get(campaign_id)
        if current.status != "draft":
            raise Conflict(f"campaign {campaign_id} is {current.status}: only a draft can be "
                           f"edited (cancel it and create a new one)")
        merged = {**payload_of(current.spec), **changes}
        if "variants" in changes:
            merged.pop("template", None)
        if "template" in changes:
            merged.pop("variants", None)
        spec = parse_spec({k: v for k, v in merged.items() if v is not None}, self.config)
        if spec.kind != current.kind:
            raise BadRequest("kind: cannot change once created")
        if spec.kind == "pull":
            self.check_keywords(spec, campaign_id)

        await self.db.write(lambda tx: _save_draft(tx, campaign_id, spec, self.clock.now()))
        return await self.get(campaign_id)

    # -- preview -------------------------------------------------------------------------

    async def preview(self, campaign_id: str) -> dict[str, Any]:
        """Audience size, cost per variant (encoding and segments), and a few real messages."""
        campaign = await self.get(campaign_id)
        spec = campaign.spec
        variants = []
        for v in spec.variants:
            text = render(v.template, {})  # placeholders at their defaults
            parts = segment(text)
            variants.append({"name": v.name, "percent": v.percent, "encoding": parts.encoding,
                             "segments": parts.segments, "characters": len(text),
                             "non_gsm_characters": non_gsm(text)})
        out: dict[str, Any] = {"campaign": campaign.id, "variants": variants}
        if campaign.kind == "pull":
            return out
        where, params = self._where(spec)
        out["audience"] = await sql.audience_count(self.db, spec.program_id, where, params)
        phones = await sql.audience_sample(self.db, spec.program_id, where, params, SAMPLES)
        profiles = {r["phone"]: Profile.from_row(r)
                    for r in await get_profiles(self.db, phones)}
        samples = []
        for i, phone in enumerate(phones):
            variant = spec.variants[i % len(spec.variants)]
            body = render(variant.template, profile_values(profiles.get(phone), phone))
            parts = segment(body)
            samples.append({"phone": phone, "variant": variant.name, "body": body,
                            "encoding": parts.encoding, "segments": parts.segments})
        out["samples"] = samples
        out["segments_total_estimate"] = round(
            out["audience"] * sum(v["segments"] * v["percent"] for v in variants) / 100)
        return out

    @staticmethod
    def _where(spec: Spec) -> tuple[str, list[Any]]:
        return compile_segment(spec.audience) if spec.audience else ("1", [])

    # -- lifecycle -----------------------------------------------------------------------

    async def schedule(self, campaign_id: str, schedule: Any = None) -> Campaign:
        """draft → scheduled. A pull campaign's keyword answers from now on (inside its
        window); a push campaign's first run is armed."""
        campaign = await self.get(campaign_id)
        if campaign.status != "draft":
            raise Conflict(f"campaign {campaign_id} is {campaign.status}: only a draft can be "
                           f"scheduled")
        now = self.clock.now()
        spec = campaign.spec
        first: datetime | None = None
        if campaign.kind == "push":
            plan = parse_schedule(schedule) if schedule else spec.schedule
            if plan is None:
                raise BadRequest("schedule: required (in the campaign or in this request)")
            first = plan.first_run(now)
            if first is None:
                raise BadRequest("schedule: it never runs (is 'until' in the past?)")
            if plan.kind in ("at", "local_time") and first < now - timedelta(seconds=1):
                raise BadRequest(f"schedule: {first.isoformat()} is in the past")
            where, params = self._where(spec)
            if not await sql.audience_count(self.db, spec.program_id, where, params):
                raise Conflict("the audience is empty: nobody matching it is opted in to "
                               f"program {spec.program_id!r}")
            spec = replace(spec, schedule=plan)
        else:
            if spec.ends_at is not None and spec.ends_at <= now:
                raise BadRequest(f"ends_at: {spec.ends_at.isoformat()} is in the past")
            self.check_keywords(spec, campaign_id)

        async def write(tx: Tx) -> None:
            await _save_draft(tx, campaign_id, spec, now)
            await sql.set_status(tx, campaign_id, "scheduled", now, next_run_at=first)

        await self.db.write(write)
        updated = await self.get(campaign_id)
        if first is not None:
            self._arm(campaign_id, first)
        self.on_change(updated)
        return updated

    async def pause(self, campaign_id: str) -> Campaign:
        """Nothing more of it leaves from this moment: messages claimed by a sender go back,
        queued ones are held, the run stops queuing."""
        campaign = await self.get(campaign_id)
        if campaign.status not in ("scheduled", "running"):
            raise Conflict(f"campaign {campaign_id} is {campaign.status}: only a scheduled "
                           f"or running campaign can be paused")
        self.holds.stop(campaign_id)
        self._gate(campaign_id).clear()
        now = self.clock.now()

        async def write(tx: Tx) -> int:
            await _expect(tx, campaign_id, ("scheduled", "running"))
            await sql.set_status(tx, campaign_id, "paused", now)
            return await sql.hold(tx, campaign_id, now)

        try:
            held = await self.db.write(write)
        except BaseException:
            self.holds.resume(campaign_id)
            self._gate(campaign_id).set()
            raise
        log.info("campaign %s paused (%d messages held)", campaign_id, held)
        updated = await self.get(campaign_id)
        self.on_change(updated)
        return updated

    async def resume(self, campaign_id: str) -> Campaign:
        campaign = await self.get(campaign_id)
        if campaign.status != "paused":
            raise Conflict(f"campaign {campaign_id} is {campaign.status}: only a paused "
                           f"campaign can be resumed")
        now = self.clock.now()
        expires = now + timedelta(minutes=self.config.outbound.validity_minutes)

        async def write(tx: Tx) -> int:
            await _expect(tx, campaign_id, ("paused",))
            active = await sql.has_unfinished_run(tx, campaign_id)
            await sql.set_status(tx, campaign_id, "running" if active else "scheduled", now)
            return await sql.release(tx, campaign_id, now, expires)

        released = await self.db.write(write)
        self.holds.resume(campaign_id)
        self._gate(campaign_id).set()
        log.info("campaign %s resumed (%d messages released)", campaign_id, released)
        self.runner.wake(self.short_codes[campaign.program_id])
        updated = await self.get(campaign_id)
        self.on_change(updated)
        return updated

    async def cancel(self, campaign_id: str) -> Campaign:
        campaign = await self.get(campaign_id)
        if campaign.status in ("completed", "cancelled"):
            raise Conflict(f"campaign {campaign_id} is already {campaign.status}")
        self.holds.stop(campaign_id)
        now = self.clock.now()

        async def write(tx: Tx) -> tuple[int, int]:
            await _expect(tx, campaign_id, ("draft", "scheduled", "running", "paused"))
            await sql.set_status(tx, campaign_id, "cancelled", now, next_run_at=None)
            for run in await sql.runs(tx, campaign_id):
                if run["status"] in sql.UNFINISHED:
                    await sql.set_run(tx, run["id"], "cancelled", now)
            return (await sql.cancel_waiting(tx, campaign_id, now),
                    await sql.skip_unqueued(tx, campaign_id, "campaign_cancelled"))

        cancelled, skipped = await self.db.write(write)
        self._disarm(campaign_id)
        self._gate(campaign_id).set()  # a paused run wakes up to see it is over
        log.info("campaign %s cancelled (%d queued messages cancelled, %d recipients not "
                 "queued)", campaign_id, cancelled, skipped)
        updated = await self.get(campaign_id)
        self.on_change(updated)
        return updated

    # -- background: the scheduler and the runs ------------------------------------------

    async def run(self) -> None:
        """The worker: arm every schedule, resume unfinished runs, then keep them going."""
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.start()
        try:
            await self.recover()
            await asyncio.Event().wait()
        finally:
            self._scheduler.shutdown(wait=False)
            tasks = list(self._runs.values())
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def recover(self) -> None:
        now = self.clock.now()
        for row in await sql.in_status(self.db, ("scheduled", "running", "paused")):
            try:
                campaign = Campaign.from_row(row, self.config)
            except BadRequest as exc:  # e.g. its program is no longer configured
                log.error("campaign %s cannot run: %s", row["id"], exc)
                continue
            if campaign.status == "paused":
                self.holds.stop(campaign.id)
                self._gate(campaign.id).clear()
            due = campaign.next_run_at
            if due is None:
                continue
            if due <= now and now - due > self.grace:
                due = await self._record_missed(campaign, due, now)
                if due is None:
                    continue
            self._arm(campaign.id, due)
        for run in await sql.unfinished_runs(self.db):
            try:
                campaign = await self.get(run["campaign_id"])
            except BadRequest as exc:
                log.error("campaign %s run %d cannot resume: %s", run["campaign_id"],
                          run["id"], exc)
                continue
            self._start_run(campaign, run["id"])

    async def _record_missed(self, campaign: Campaign, due: datetime, now: datetime
                             ) -> datetime | None:
        """Runs too late to send: recorded as missed; returns the next run still ahead."""
        schedule = campaign.spec.schedule
        missed: list[datetime] = []
        nxt: datetime | None = due
        while nxt is not None and nxt <= now - self.grace and len(missed) < MAX_MISSED:
            missed.append(nxt)
            nxt = schedule.next_after(nxt) if schedule else None
        while nxt is not None and nxt <= now - self.grace:  # beyond the cap: skipped silently
            nxt = schedule.next_after(nxt) if schedule else None

        async def write(tx: Tx) -> None:
            for when in missed:
                await sql.create_run(tx, campaign.id, when, "missed", now)
            active = await sql.has_unfinished_run(tx, campaign.id)
            status = campaign.status if (nxt is not None or active) else "completed"
            await sql.set_status(tx, campaign.id, status, now, next_run_at=nxt)

        await self.db.write(write)
        log.warning("campaign %s: %d run(s) missed while the gateway was down (more than %s "
                    "late)", campaign.id, len(missed), self.grace)
        return nxt

    def _arm(self, campaign_id: str, when: datetime) -> None:
        if self._scheduler is None:
            return  # not serving (tests drive fire() directly)
        # Due already (by our clock): at once; the scheduler's own clock is the system's.
        run_date = when if when > self.clock.now() else datetime.now(UTC)
        self._scheduler.add_job(self.fire, DateTrigger(run_date=run_date, timezone=UTC),
                                args=[campaign_id, when], id=campaign_id,
                                replace_existing=True, misfire_grace_time=None)

    def _disarm(self, campaign_id: str) -> None:
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job(campaign_id)

    async def fire(self, campaign_id: str, when: datetime) -> int | None:
        """The run due at `when`: created once (a second call is a no-op), then started."""
        campaign = await self.get(campaign_id)
        if campaign.status not in ("scheduled", "running", "paused") or (
                campaign.next_run_at != when):
            return None  # cancelled, or re-armed for another time
        nxt = campaign.spec.schedule.next_after(when) if campaign.spec.schedule else None
        now = self.clock.now()

        async def write(tx: Tx) -> tuple[int, bool]:
            row = await sql.get(tx, campaign_id)
            if row is None or row["next_run_at"] != isoformat(when):
                return 0, False
            run_id, created = await sql.create_run(tx, campaign_id, when, "materialising",
                                                   now)
            status = "paused" if row["status"] == "paused" else "running"
            await sql.set_status(tx, campaign_id, status, now, next_run_at=nxt)
            return run_id, created

        run_id, created = await self.db.write(write)
        if not created:
            return None
        log.info("campaign %s: run %d starts (due %s)", campaign_id, run_id, isoformat(when))
        if nxt is not None:
            self._arm(campaign_id, nxt)
        self._start_run(await self.get(campaign_id), run_id)
        return run_id

    def _gate(self, campaign_id: str) -> asyncio.Event:
        gate = self._go.get(campaign_id)
        if gate is None:
            gate = self._go[campaign_id] = asyncio.Event()
            gate.set()
        return gate

    def _start_run(self, campaign: Campaign, run_id: int) -> None:
        if run_id in self._runs and not self._runs[run_id].done():
            return
        task = asyncio.create_task(self._supervise(campaign, run_id),
                                   name=f"campaign:{campaign.id}:{run_id}")
        self._runs[run_id] = task
        task.add_done_callback(lambda _t, r=run_id: self._runs.pop(r, None))

    async def _supervise(self, campaign: Campaign, run_id: int) -> None:
        while True:
            try:
                await self.runner.run(campaign, run_id, self._gate(campaign.id))
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("campaign %s run %d: unexpected error (retrying)", campaign.id,
                              run_id)
                await asyncio.sleep(1.0)

    async def wait_idle(self) -> None:
        """Until every run in progress has ended (tests, shutdown)."""
        while self._runs:
            await asyncio.gather(*self._runs.values(), return_exceptions=True)

    async def _finished(self, campaign_id: str, run_id: int) -> None:
        now = self.clock.now()

        async def write(tx: Tx) -> None:
            if not await sql.finish_run(tx, run_id, now):
                return  # cancelled meanwhile
            row = await sql.get(tx, campaign_id)
            if row is None or row["status"] not in ("running", "scheduled"):
                return
            if not await sql.has_unfinished_run(tx, campaign_id):
                status = "scheduled" if row["next_run_at"] else "completed"
                await sql.set_status(tx, campaign_id, status, now)

        await self.db.write(write)
        log.info("campaign %s: run %d completed", campaign_id, run_id)


async def _expect(tx: Tx, campaign_id: str, statuses: tuple[str, ...]) -> None:
    """Inside the write: the campaign is still in one of `statuses` (another request may
    have changed it since it was read)."""
    row = await sql.get(tx, campaign_id)
    if row is None or row["status"] not in statuses:
        raise Conflict(f"campaign {campaign_id} changed meanwhile: it is "
                       f"{row['status'] if row else 'gone'}")


async def _save_draft(tx: Tx, campaign_id: str, spec: Spec, at: datetime) -> None:
    await _expect(tx, campaign_id, ("draft",))
    await sql.update_definition(tx, campaign_id, spec.name, spec.program_id,
                                dumps(payload_of(spec)), at)


def payload_of(spec: Spec) -> dict[str, Any]:
    """The stored form: what parse_spec reads back."""
    out = spec.to_dict()
    return {k: v for k, v in out.items() if v is not None}

