"""The sandbox provider: keeps what it sends, answers with receipts like a carrier."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import keys
from gateway.clock import FrozenClock
from gateway.db import Database, Tx
from gateway.models import OutgoingSMS, StatusUpdate
from gateway.providers import SendError, SendErrorKind
from gateway.providers.sandbox import SandboxProvider
from tests.conftest import sample


class Receipts:
    """A tracking sink: records receipts and stores them as the app does."""

    def __init__(self) -> None:
        self.seen: list[StatusUpdate] = []

    async def __call__(self, tx: Tx, update: StatusUpdate, outbound_id: int | None) -> None:
        await tx.execute("INSERT INTO status_callbacks (provider, provider_sid, status,"
                         " error_code, received_at, params_json) VALUES (?, ?, ?, ?, ?, '{}')",
                         (update.provider, update.provider_sid, update.status,
                          update.error_code, update.received_at.isoformat()))
        self.seen.append(update)


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = await Database.open(tmp_path / "mcrm.sqlite3")
    yield database
    await database.close()


def sms(to: str = "+15557654321", body: str = "Hi there") -> OutgoingSMS:
    return OutgoingSMS(to_number=to, from_number="12345", body=body)


async def test_send_keeps_the_message_and_receipts_follow_in_order(db: Database) -> None:
    clock = FrozenClock(datetime(2026, 11, 23, 12, tzinfo=UTC))
    sink = Receipts()
    provider = SandboxProvider(db, clock, receipt_delay_seconds=2, on_receipt=sink)
    result = await provider.send(sms(body="Grüße 👋"))
    assert result.provider_sid.startswith("SM") and result.status == "queued"
    assert result.num_segments == 1
    row = await db.fetchone("SELECT * FROM sandbox_messages")
    assert row is not None and (row["to_number"], row["body"], row["status"]) == (
        "+15557654321", "Grüße 👋", "queued")

    assert await provider.deliver_due_receipts() == 0  # not due yet
    clock.advance(timedelta(seconds=2))
    assert await provider.deliver_due_receipts() == 1
    clock.advance(timedelta(seconds=2))
    assert await provider.deliver_due_receipts() == 1
    clock.advance(timedelta(seconds=60))
    assert await provider.deliver_due_receipts() == 0  # nothing more, ever
    assert [(u.provider_sid, u.status, u.error_code) for u in sink.seen] == [
        (result.provider_sid, "sent", None), (result.provider_sid, "delivered", None)]


@pytest.mark.parametrize(("to", "code", "kind"), [
    ("+15005550001", "21211", SendErrorKind.REJECTED),
    ("+15005550002", "21612", SendErrorKind.REJECTED),
    ("+15005550004", "21610", SendErrorKind.CONTACT_STOPPED),
    ("+15005550009", "21614", SendErrorKind.REJECTED),
])
async def test_magic_numbers_fail_at_send_time(db: Database, to: str, code: str,
                                               kind: SendErrorKind) -> None:
    provider = SandboxProvider(db, FrozenClock(datetime.now(UTC)), receipt_delay_seconds=0,
                               on_receipt=Receipts())
    with pytest.raises(SendError) as caught:
        await provider.send(sms(to=to))
    assert (caught.value.kind, caught.value.provider_code) == (kind, code)
    assert not caught.value.transient
    assert await db.fetchall("SELECT * FROM sandbox_messages") == []


async def test_carrier_error_numbers_come_back_undelivered(db: Database) -> None:
    clock = FrozenClock(datetime(2026, 11, 23, 12, tzinfo=UTC))
    sink = Receipts()
    provider = SandboxProvider(db, clock, receipt_delay_seconds=1, on_receipt=sink)
    await provider.send(sms(to="+15555530003"))
    for _ in range(2):
        clock.advance(timedelta(seconds=1))
        await provider.deliver_due_receipts()
    assert [(u.status, u.error_code) for u in sink.seen] == [("sent", None),
                                                             ("undelivered", "30003")]


async def test_empty_body_is_refused(db: Database) -> None:
    provider = SandboxProvider(db, FrozenClock(datetime.now(UTC)), receipt_delay_seconds=0,
                               on_receipt=Receipts())
    with pytest.raises(SendError, match="21602"):
        await provider.send(sms(body=""))


async def test_receipts_due_before_a_restart_are_still_sent(tmp_path: Path) -> None:
    clock = FrozenClock(datetime(2026, 11, 23, 12, tzinfo=UTC))
    path = tmp_path / "mcrm.sqlite3"
    db = await Database.open(path)
    first = SandboxProvider(db, clock, receipt_delay_seconds=1, on_receipt=Receipts())
    result = await first.send(sms())
    await db.close()  # the process dies before any receipt

    db = await Database.open(path)
    sink = Receipts()
    second = SandboxProvider(db, clock, receipt_delay_seconds=1, on_receipt=sink)
    clock.advance(timedelta(seconds=1))
    await second.deliver_due_receipts()
    clock.advance(timedelta(seconds=1))
    await second.deliver_due_receipts()
    await db.close()
    assert [(u.provider_sid, u.status) for u in sink.seen] == [
        (result.provider_sid, "sent"), (result.provider_sid, "delivered")]


async def test_in_the_app_receipts_land_in_the_delivery_log(client: Any) -> None:
    provider = client.app[keys.PROVIDER]
    result = await provider.send(sms())
    for _ in range(200):
        rows = await client.app[keys.DB].fetchall(
            "SELECT status FROM status_callbacks WHERE provider_sid = ? ORDER BY id",
            (result.provider_sid,))
        if len(rows) == 2:
            break
        await asyncio.sleep(0.02)
    assert [r[0] for r in rows] == ["sent", "delivered"]
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "mcrm_status_callbacks_total", status="delivered") == 1


@pytest.mark.parametrize("log_text", [False, True])
async def test_message_text_is_logged_only_when_asked(db: Database, log_text: bool,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="gateway.providers.sandbox")
    provider = SandboxProvider(db, FrozenClock(datetime(2026, 11, 23, 12, tzinfo=UTC)),
                               receipt_delay_seconds=2, on_receipt=Receipts(),
                               log_text=log_text)
    await provider.send(sms(body="Your code is 481516"))
    [line] = [r.getMessage() for r in caplog.records if "sandbox sent" in r.getMessage()]
    assert ("481516" in line) is log_text
    assert "(1 segment(s))" in line
