"""Pull campaigns: a keyword that answers with content while the campaign's window is open.

The keywords live in memory (rebuilt from the database at start and changed with every
save), registered on the router as a run-time source: they match after the configured
keywords, never before the reserved ones (STOP, HELP, START …) or an active conversation.
Inside the window the customer gets the content, optionally one coupon code (the same one if
they text again) and optionally the program's double opt-in request; outside it, the
campaign's outside reply. Every hit is counted.
"""

from __future__ import annotations

import logging
from datetime import datetime

from campaigns.model import Campaign, Spec
from consent import Consent
from gateway.config import Config
from gateway.db import Database
from gateway.db import campaigns as sql
from gateway.errors import BadRequest, Conflict
from gateway.models import Reply
from gateway.templates import render
from gateway.text import normalise, words
from handlers.router import Context, Handler, Route, Router

log = logging.getLogger(__name__)

#: Statuses in which a pull campaign's keyword answers (inside or outside its window).
LIVE = ("scheduled", "paused")


class PullCampaigns:
    def __init__(self, config: Config, consent: Consent, router: Router) -> None:
        self.consent, self.router = consent, router
        self.short_codes = {p.id: p.short_code for p in config.programs}
        self._routes: dict[str, list[Route]] = {}  # campaign id → its keywords
        self._campaigns: dict[str, Campaign] = {}

    async def load(self, db: Database, config: Config) -> None:
        for row in await sql.in_status(db, LIVE, kind="pull"):
            try:
                self.update(Campaign.from_row(row, config))
            except BadRequest as exc:  # e.g. its program is no longer configured
                log.error("pull campaign %s is not answered: %s", row["id"], exc)

    def update(self, campaign: Campaign) -> None:
        """Follow a save: live campaigns answer their keywords, others no longer do."""
        self._routes.pop(campaign.id, None)
        self._campaigns.pop(campaign.id, None)
        if campaign.kind != "pull" or campaign.status not in LIVE:
            return
        code = self.short_codes[campaign.program_id]
        self._campaigns[campaign.id] = campaign
        self._routes[campaign.id] = [
            Route(tuple(keyword.split()), self._handler(campaign.id), code, campaign.program_id)
            for keyword in campaign.spec.keywords]

    def match(self, short_code: str, tokens: list[str]) -> tuple[Route, list[str]] | None:
        """The router's source: the first live pull keyword that starts the text."""
        for routes in self._routes.values():
            for route in routes:
                size = len(route.words)
                if route.short_code == short_code and tuple(tokens[:size]) == route.words:
                    return route, tokens[size:]
        return None

    def check_keywords(self, spec: Spec, campaign_id: str | None = None) -> None:
        """A keyword must be free on its short code: not reserved, not configured, not
        another live pull campaign's (409 naming the clash)."""
        code = self.short_codes[spec.program_id]
        families = self.consent.catalog.families
        for keyword in spec.keywords:
            first = keyword.split()[0]
            if families.is_reserved(keyword) or families.is_reserved(first):
                raise Conflict(f"keywords: {keyword.upper()!r} is reserved (opt-out, opt-in "
                               f"or help)")
            if self.consent.catalog.by_keyword(code, first):
                raise Conflict(f"keywords: {keyword.upper()!r} joins a program on {code}")
            found = self.router.match(code, " ".join(words(normalise(keyword))))
            if found is not None:
                route = found[0]
                owner = next((cid for cid, routes in self._routes.items() if route in routes),
                             None)
                if owner is None or owner != campaign_id:
                    what = f"pull campaign {owner}" if owner else "a configured keyword"
                    raise Conflict(f"keywords: {keyword.upper()!r} on {code} is already "
                                   f"{what}'s")

    def _handler(self, campaign_id: str) -> Handler:
        async def handle(ctx: Context) -> list[Reply]:
            campaign = self._campaigns.get(campaign_id)  # None: cancelled a moment ago
            return await self.answer(ctx, campaign) if campaign else []

        return handle

    async def answer(self, ctx: Context, campaign: Campaign) -> list[Reply]:
        spec, program = campaign.spec, campaign.program_id
        now: datetime = ctx.now
        open_ = campaign.status == "scheduled" and spec.in_window(now)
        await sql.add_hit(ctx.tx, campaign.id, ctx.phone, now, open_, ctx.msg.provider_sid)
        values = ctx.values()
        if not open_:
            return [Reply(render(spec.outside_reply, values), program)] \
                if spec.outside_reply else []
        code = None
        if spec.uses_code():
            code = await sql.code_for(ctx.tx, campaign.id, ctx.phone, now)
            if code is None:
                log.warning("pull campaign %s: the coupon pool is empty", campaign.id)
                return [Reply(render(spec.exhausted_reply, values), program)] \
                    if spec.exhausted_reply else []
        variant = spec.variants[0]
        replies = [Reply(render(variant.template, {**values, "code": code}), program)]
        await ctx.profiles.record(ctx.tx, ctx.phone, "campaign.pull", {
            "campaign": campaign.id, "name": campaign.name, "code": code}, now)
        if spec.join:
            target = self.consent.catalog.get(program)
            if target is not None:
                language = ctx.profile.language if ctx.profile else None
                joined = await self.consent.responder.join(ctx.tx, ctx.msg, target, language)
                replies += joined.replies
        return replies
