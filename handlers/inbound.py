"""What to answer to an inbound text, in the order the issue of record sets:

1. the reserved families (opt-out, opt-in, help — the consent responder) always win; an
   opt-out also ends the customer's conversation on that short code;
2. the customer's active conversation on this short code;
3. custom keywords (first match wins);
4. the fallback (a configured reply, a registered handler, or nothing).

Everything runs inside the transaction that stores the message, so the replies, the state and
the profile changes are committed together. Automatic replies are capped per number per
window (loops with auto-responders, floods); the opt-out confirmation always goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from consent import Consent, Intent
from gateway.config import Config
from gateway.db import Tx
from gateway.db.conversations import replies_since
from gateway.models import InboundMessage, Reply
from gateway.outbound import Outbox
from gateway.phone import mask
from gateway.profiles import ProfileStore
from gateway.templates import profile_values, render
from handlers.conversations import Conversations
from handlers.router import Context, Router, as_replies

log = logging.getLogger(__name__)


class InboundRouter:
    def __init__(self, config: Config, consent: Consent, profiles: ProfileStore,
                 router: Router, conversations: Conversations, *,
                 outbox: Outbox | None = None,
                 on_silenced: Callable[[InboundMessage], None] = lambda msg: None) -> None:
        self.consent, self.profiles = consent, profiles
        self.outbox = outbox  # for handlers' replies that leave later
        self.router, self.conversations = router, conversations
        self.fallback_reply = config.inbound.fallback_reply
        self.max_replies = config.inbound.max_auto_replies
        self.window = timedelta(minutes=config.inbound.auto_reply_window_minutes)
        self.on_silenced = on_silenced
        self.default_program = {p.short_code: p.id for p in reversed(config.programs)}

    async def __call__(self, tx: Tx, msg: InboundMessage) -> list[Reply]:
        outcome = await self.consent.responder.handle(tx, msg)
        if outcome is not None:
            if outcome.intent is Intent.OPT_OUT:
                await self.conversations.stop(tx, msg, "stopped")
                return outcome.replies  # exactly one confirmation, whatever the limit says
            return await self._limited(tx, msg, outcome.replies)
        active = await self.conversations.active(tx, msg)
        if active is not None:
            row, flow = active
            return await self._limited(tx, msg, await self.conversations.answer(
                tx, msg, row, flow))
        return await self._limited(tx, msg, await self._keyword(tx, msg))

    async def _keyword(self, tx: Tx, msg: InboundMessage) -> list[Reply]:
        found = self.router.match(msg.to_number, msg.body)
        handler = self.router.fallback_for(msg.to_number) if found is None else None
        if found is None and handler is None and not self.fallback_reply:
            return []  # unknown text, nothing to say: no trip to the database
        profile = await self.profiles.load(tx, msg.from_number)
        if found is not None:
            route, args = found
            program = route.program_id or self.default_program.get(msg.to_number)
            ctx = Context(tx, msg, " ".join(route.words), args, program, profile,
                          self.profiles, self.conversations, self.outbox)
            return as_replies(await route.handler(ctx), program)
        program = self.default_program.get(msg.to_number)
        if handler is not None:
            ctx = Context(tx, msg, "", [], program, profile, self.profiles, self.conversations,
                          self.outbox)
            return as_replies(await handler(ctx), program)
        if self.fallback_reply:
            values = profile_values(profile, msg.from_number)
            return [Reply(render(self.fallback_reply, values), program)]
        return []

    async def _limited(self, tx: Tx, msg: InboundMessage, replies: list[Reply]
                       ) -> list[Reply]:
        if not replies:
            return replies
        sent = await replies_since(tx, msg.from_number, msg.received_at - self.window)
        if sent + len(replies) > self.max_replies:
            log.warning("not answering %s: %d automatic replies in the last %s already "
                        "(a loop or a flood?)", mask(msg.from_number), sent, self.window)
            self.on_silenced(msg)
            return []
        return replies
