"""A provider that needs no account: it keeps what it "sends" and answers like a carrier.

Messages land in the ``sandbox_messages`` table and the log. Receipts follow after
``receipt_delay_seconds`` (queued → sent → delivered) through the same path a status
callback takes. Twilio's magic test numbers fail at send time as they do with Twilio's test
credentials, and numbers ending in a carrier error code fail at delivery, so every outcome can
be tried without a phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from gateway.clock import Clock
from gateway.config import Config
from gateway.db import Database, Tx
from gateway.db import sandbox as store
from gateway.errors import GatewayError
from gateway.models import OutgoingSMS, StatusUpdate
from gateway.phone import mask
from gateway.providers.base import (
    ProviderMessage,
    ProviderStatus,
    SendError,
    SendErrorKind,
    SendResult,
)
from gateway.providers.error_codes import CONTACT_STOPPED, describe
from gateway.sms import segment

log = logging.getLogger(__name__)

#: Twilio's magic "To" numbers for test credentials, and the error each one gives.
SEND_TIME_ERRORS: dict[str, str] = {
    "+15005550001": "21211",
    "+15005550002": "21612",
    "+15005550003": "21408",
    "+15005550004": CONTACT_STOPPED,
    "+15005550009": "21614",
}
#: A recipient whose number ends in one of these is "undelivered" with that carrier code.
DELIVERY_ERRORS = ("30003", "30005", "30006", "30007")

SECRET_FILE = "sandbox-webhook.secret"


def webhook_secret(config: Config, *, create: bool) -> str:
    """The key the sandbox's webhooks are signed with: the configured one, else the one kept
    beside the database (made when `create`, readable by its owner only). `mcrm serve` and
    `mcrm simulate` find the same file through the same config, whichever runs first, so
    both sides share it with no setup."""
    if config.provider.sandbox.webhook_secret:
        return str(config.provider.sandbox.webhook_secret)
    path = config.database_path().parent / SECRET_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not create:
            raise GatewayError(f"no sandbox webhook secret in {path}: start the gateway "
                               "first, or set provider.sandbox.webhook_secret") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret


#: Stores a receipt: (transaction, receipt, our message id from the callback URL).
ReceiptSink = Callable[[Tx, StatusUpdate, int | None], Awaitable[None]]


class SandboxProvider:
    name = "sandbox"

    def __init__(self, db: Database, clock: Clock, *, receipt_delay_seconds: float,
                 on_receipt: ReceiptSink, log_text: bool = False) -> None:
        self.db, self.clock = db, clock
        self.log_text = log_text
        self.delay = timedelta(seconds=receipt_delay_seconds)
        self.on_receipt = on_receipt
        self._wake = asyncio.Event()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, sms: OutgoingSMS) -> SendResult:
        code = SEND_TIME_ERRORS.get(sms.to_number)
        if code is not None:
            kind = (SendErrorKind.CONTACT_STOPPED if code == CONTACT_STOPPED
                    else SendErrorKind.REJECTED)
            raise SendError(kind, provider_code=code, detail=describe(code), http_status=400)
        if not sms.body:
            raise SendError(SendErrorKind.REJECTED, provider_code="21602",
                            detail=describe("21602"), http_status=400)
        sid = "SM" + uuid.uuid4().hex
        now = self.clock.now()
        parts = segment(sms.body).segments

        await self.db.write(lambda tx: store.insert_message(
            tx, sid=sid, from_number=sms.from_number, to_number=sms.to_number, body=sms.body,
            status_callback=sms.status_callback, now=now, first_receipt_at=now + self.delay))
        self._wake.set()
        # Bodies carry names and codes: in the log only when asked (logging.message_text).
        log.info("sandbox sent %s → %s as %s (%d segment(s))%s", sms.from_number,
                 mask(sms.to_number), sid, parts, f": {sms.body}" if self.log_text else "")
        return SendResult(provider_sid=sid, status="queued", num_segments=parts)

    async def lookup(self, sms: OutgoingSMS, since: datetime) -> list[ProviderMessage]:
        rows = await store.find(self.db, sms.from_number, sms.to_number, since)
        return [ProviderMessage(sid=r["sid"], to_number=r["to_number"],
                                from_number=r["from_number"], body=r["body"],
                                status=r["status"],
                                created_at=datetime.fromisoformat(r["created_at"]),
                                num_segments=segment(r["body"]).segments) for r in rows]

    async def fetch(self, sid: str) -> ProviderStatus:
        row = await store.get(self.db, sid)
        if row is None:
            raise SendError(SendErrorKind.REJECTED, provider_code="20404",
                            detail=f"the sandbox has no message {sid}", http_status=404)
        return ProviderStatus(sid=sid, status=row["status"], error_code=row["error_code"])

    async def run_receipts(self) -> None:
        """Emit due receipts forever (a background worker); survives restarts via the table."""
        while True:
            try:
                due = await self.deliver_due_receipts()
            except Exception:  # e.g. the database is busy: try again shortly
                log.exception("sandbox receipts: unexpected error")
                await asyncio.sleep(1.0)
                continue
            if due:
                continue
            self._wake.clear()
            next_at = await store.next_receipt_at(self.db)
            wait = 5.0
            if next_at is not None:
                wait = min(max((next_at - self.clock.now()).total_seconds(), 0.0), 5.0)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def deliver_due_receipts(self, limit: int = 100) -> int:
        """One pass: advance every message whose next receipt is due; returns how many."""
        now = self.clock.now()
        rows = await store.due_receipts(self.db, now, limit)
        for row in rows:
            await self.db.write(self._advance(row["sid"], row["to_number"], row["status"],
                                              _outbound_id(row["status_callback"])))
        return len(rows)

    def _advance(self, sid: str, to_number: str, status: str, outbound_id: int | None
                 ) -> Callable[[Tx], Awaitable[None]]:
        async def advance(tx: Tx) -> None:
            now = self.clock.now()
            error = next((c for c in DELIVERY_ERRORS if to_number.endswith(c)), None)
            if status == "queued":
                new, next_at, error = "sent", now + self.delay, None
            else:
                new, next_at = ("undelivered" if error else "delivered"), None
            # Guarded by the old status: a second pass over the same row changes nothing.
            if not await store.advance_status(tx, sid=sid, old=status, new=new,
                                              error_code=error, now=now, next_at=next_at):
                return
            params = {"MessageSid": sid, "MessageStatus": new, "To": to_number}
            if error:
                params["ErrorCode"] = error
            await self.on_receipt(tx, StatusUpdate(
                provider=self.name, provider_sid=sid, status=new, received_at=now,
                error_code=error, params=params), outbound_id)
            log.info("sandbox receipt %s: %s%s", sid, new, f" ({error})" if error else "")

        return advance


def _outbound_id(callback: str | None) -> int | None:
    """Our message id from the status callback URL (…/webhooks/twilio/status?outbound=ID)."""
    values = parse_qs(urlsplit(callback or "").query).get("outbound", [])
    return int(values[0]) if values and values[0].isdigit() else None
