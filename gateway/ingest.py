"""What happens to a provider's report once the edge has checked and parsed it: store it,
and put it on the customer's profile in the same transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.db import Database, Tx
from gateway.db.messages import (
    inline_replies,
    insert_inbound,
    insert_inline_reply,
    insert_statuses,
    link_receipts,
)
from gateway.metrics import GatewayMetrics
from gateway.models import InboundMessage, Reply, StatusUpdate
from gateway.phone import mask
from gateway.profiles import ProfileStore

log = logging.getLogger(__name__)


#: Decides the replies to an inbound message, inside the transaction that stores it.
InboundHook = Callable[[Tx, InboundMessage], Awaitable[list[Reply]]]
#: Reacts to a delivery receipt inside the transaction that stores it (carrier opt-outs).
StatusHook = Callable[[Tx, StatusUpdate], Awaitable[object]]


async def no_replies(tx: Tx, msg: InboundMessage) -> list[Reply]:
    return []


class Ingest:
    """Stores inbound messages (once per provider id) and every delivery receipt."""

    def __init__(self, db: Database, metrics: GatewayMetrics, profiles: ProfileStore, *,
                 short_codes: frozenset[str] = frozenset(),
                 committed: Callable[[], None] = lambda: None,
                 on_inbound: InboundHook = no_replies,
                 on_status: Sequence[StatusHook] = ()) -> None:
        self.db, self.metrics, self.profiles = db, metrics, profiles
        self.short_codes = short_codes
        self.committed = committed
        self.on_inbound, self.on_status = on_inbound, tuple(on_status)
        self._receipts: list[tuple[StatusUpdate, int | None, asyncio.Future[None]]] = []
        self._receipt_writer: asyncio.Task[None] | None = None

    async def inbound(self, msg: InboundMessage) -> list[tuple[int, str]]:
        """Store `msg` with its consequences and replies, all in one transaction; returns the
        replies to answer at once as (outbound id, text) — the same again for a retry."""

        async def store(tx: Tx) -> tuple[int, list[tuple[int, str]]] | None:
            rowid = await insert_inbound(tx, msg)
            if rowid is None:
                return None
            await self.profiles.on_inbound(tx, msg)
            stored = []
            for reply in await self.on_inbound(tx, msg):
                reply_id = await insert_inline_reply(
                    tx, inbound_id=rowid, from_number=msg.to_number, to_number=msg.from_number,
                    body=reply.text, program_id=reply.program_id, at=msg.received_at)
                stored.append((reply_id, reply.text, reply.program_id))
            await self.profiles.on_outbound(tx, [(msg.from_number, {
                "message_id": reply_id, "provider": msg.provider, "inline": True,
                "in_reply_to": msg.provider_sid, "short_code": msg.to_number,
                "program": program, "body": text}) for reply_id, text, program in stored],
                msg.received_at)
            return rowid, [(reply_id, text) for reply_id, text, _ in stored]

        stored = await self.db.write(store)
        if stored is None:
            self.metrics.inbound_duplicates.inc()
            log.info("inbound %s from %s already stored: provider retry", msg.provider_sid,
                     mask(msg.from_number))
            return await inline_replies(self.db, msg.provider, msg.provider_sid)
        rowid, replies = stored
        self.committed()
        # Only our own numbers become label values: a forged To must not grow the series.
        label = msg.to_number if msg.to_number in self.short_codes else "other"
        self.metrics.inbound.inc(short_code=label)
        log.info("inbound %s from %s to %s stored as #%d, %d repl%s", msg.provider_sid,
                 mask(msg.from_number), msg.to_number, rowid, len(replies),
                 "y" if len(replies) == 1 else "ies")
        return replies

    async def status(self, update: StatusUpdate, outbound_id: int | None = None) -> None:
        """Store a receipt; `outbound_id` names our message when the callback URL carried it.

        Receipts arriving together share one write (a campaign brings two per message, in
        bursts); each caller is answered once the commit holding its receipt is done.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._receipts.append((update, outbound_id, future))
        if self._receipt_writer is None or self._receipt_writer.done():
            self._receipt_writer = asyncio.create_task(self._write_receipts())
        await asyncio.shield(future)

    async def _write_receipts(self) -> None:
        while self._receipts:
            batch, self._receipts = self._receipts, []
            items = [(update, outbound_id) for update, outbound_id, _ in batch]
            try:
                await self.db.write(lambda tx, items=items: self.record_statuses(tx, items))
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][2], exc)
                    continue
                # One bad receipt must not fail its neighbours: write them one by one.
                for update, outbound_id, future in batch:
                    try:
                        await self.db.write(lambda tx, u=update, o=outbound_id:
                                            self.record_status(tx, u, o))
                    except Exception as exc:
                        _settle(future, exc)
                    else:
                        _settle(future, None)
                continue
            for _, _, future in batch:
                _settle(future, None)
            self.committed()

    async def record_status(self, tx: Tx, update: StatusUpdate,
                            outbound_id: int | None = None) -> None:
        """Append a receipt inside the caller's transaction (webhook or sandbox carrier)."""
        await self.record_statuses(tx, [(update, outbound_id)])

    async def record_statuses(self, tx: Tx,
                              receipts: Sequence[tuple[StatusUpdate, int | None]]) -> None:
        """Append receipts and move our messages forward; a receipt for a message we do not
        know is kept all the same."""
        updates = [update for update, _ in receipts]
        await insert_statuses(tx, updates)
        await link_receipts(tx, receipts)
        await self.profiles.on_statuses(tx, updates)
        for update in updates:
            for hook in self.on_status:
                await hook(tx, update)
            self.metrics.status_callbacks.inc(status=update.status)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
