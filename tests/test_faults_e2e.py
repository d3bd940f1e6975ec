"""Faults end to end, each lasting as long as real ones do: a real `mcrm serve` against a
Twilio-shaped fake whose resources fail on their own, and a CRM that goes away for two
minutes. Slow (minutes of wall time, little CPU): `-m "not slow"` leaves them out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consent import Kind
from tests.conftest import (
    ACCOUNT_SID,
    ADMIN_TOKEN,
    AUTH_TOKEN,
    eventually,
    free_port,
    twilio_signature,
)
from tests.daemon import api, mcrm, post, read, seed, serve, write_config
from tests.fakes.crm_receiver import CrmReceiver
from tests.fakes.twilio_server import FakeTwilio

pytestmark = pytest.mark.slow

OUTAGE = 60.0
CRM_OUTAGE = 120.0
SECRET = "crm-shared-secret-0123456789"


def config_file(folder: Path, port: int, fake_url: str, *, rate: int, rest: str = "",
                outbound: str = "") -> Path:
    return write_config(folder, port, fake_url, rate=rate, reads=50, rest=f"""
[[programs]]
id = "alerts"
name = "Acme Alerts"
short_code = "12345"
kind = "transactional"
double_opt_in = false
help_text = "Acme alerts: help@acme.example. Reply STOP to cancel."

[[programs]]
id = "deals"
name = "Acme Deals"
short_code = "12345"
keywords = ["JOIN"]
help_text = "Acme Deals: help@acme.example. Reply STOP to cancel."
quiet_hours = "always"

[outbound]
reconcile_after_seconds = 1.0
{outbound}

[inbound]
max_auto_replies = 1000

[api]
tokens = ["{ADMIN_TOKEN}"]
{rest}""")


async def queue(config: Path, to: str, body: str) -> int:
    message = await post(config, "/api/v1/messages", {"to": to, "body": body,
                                                      "program": "alerts"})
    return int(message["id"])


async def status(config: Path, message_id: int) -> str:
    return str((await api(config, f"/api/v1/messages/{message_id}"))["status"])


def bodies(fake: FakeTwilio) -> Counter[str]:
    return Counter(r.form["Body"] for r in fake.created)


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def statuses(config: Path) -> Counter[str]:
    """Read the stopped gateway's database as it is on disk."""
    with sqlite3.connect(read(config).database_path()) as conn:
        return Counter({r[0]: r[1] for r in conn.execute(
            "SELECT status, COUNT(*) FROM outbound_messages GROUP BY status")})


async def stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is not None and proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


@contextlib.asynccontextmanager
async def gateway(folder: Path, *, rate: int) -> AsyncIterator[tuple[FakeTwilio, Path]]:
    """A Twilio fake (with receipts) and an `mcrm serve` sending to it; the config's path.
    The gateway is stopped before its database is read after the block."""
    await asyncio.to_thread(folder.mkdir)
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, send_callbacks=True)
    await fake.start()
    proc = None
    try:
        config = config_file(folder, free_port(), fake.base_url, rate=rate)
        proc = await serve(config, folder / "serve.log", wait=True)
        yield fake, config
    finally:
        await stop(proc)
        await fake.close()


async def campaign_now(config: Path, template: str) -> str:
    """A push campaign to the deals program's opted-in customers, created and scheduled
    through the CLI as a marketer would; its id."""
    definition = config.parent / "campaign.toml"
    await asyncio.to_thread(definition.write_text, f'name = "Sale"\nprogram = "deals"\n'
                                                   f'template = "{template}"\n', "utf-8")
    campaign = (await mcrm(config, "campaign", "create", "--file", str(definition))).split()[0]
    await mcrm(config, "campaign", "schedule", campaign, "--now")
    return campaign


async def together(*runs: Callable[[], Awaitable[None]]) -> None:
    """Independent gateways side by side (the minutes of waiting overlap)."""
    results = await asyncio.gather(*(run() for run in runs), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]


async def test_messages_flow_at_the_rate_while_look_ups_fail_for_a_minute(tmp_path: Path
                                                                           ) -> None:
    """One unknown outcome, then the provider's Messages list failing (503, 405, a malformed
    page) for 60 s: everything else goes at the configured rate throughout, and the unknown
    one is resolved once the list answers again."""
    rate = 5
    faults: dict[str, dict[str, Any]] = {
        "503": {"status": 503}, "405": {"status": 405},
        "malformed": {"status": 200, "body": '{"messages": [{"sid": '}}

    async def run(name: str, fault: dict[str, Any]) -> None:
        async with gateway(tmp_path / name, rate=rate) as (fake, config):
            fake.then(status=500, code=20500, message="oops")  # not taken, as it turns out
            fake.fail("list", **fault)
            unknown = await queue(config, "+12125550100", "the unknown one")
            await eventually(lambda: len(fake.requests) == 1, what=f"{name}: first send")
            ids = [await queue(config, f"+1415555{n:04d}", f"unrelated #{n}")
                   for n in range(int(OUTAGE * rate) + 20)]
            began = time.monotonic()
            await asyncio.sleep(OUTAGE)
            fake.heal("list")
            ended = time.monotonic()
            looked = len(fake.calls["list"])

            sent = [r.at for r in fake.created if began <= r.at <= ended]
            for start in range(0, int(OUTAGE) - 9, 10):  # every 10 s of the minute
                slice_ = [t for t in sent if began + start <= t < began + start + 10]
                assert len(slice_) >= 8 * rate, (name, start, len(slice_))
            assert busiest_second([r.at for r in fake.created]) <= rate, name
            # Look-ups backed off and then probed at most every 4 s: no storm.
            assert 3 <= looked <= OUTAGE / 2 + 10, (name, looked)
            assert await status(config, unknown) == "sending"

            async def resolved() -> bool:
                return await status(config, unknown) in ("sent", "delivered")

            await eventually(resolved, seconds=10, what=f"{name}: the unknown one resolved")
            for message_id in ids[-3:]:
                await eventually(lambda m=message_id: _delivered(config, m), seconds=30)
            await asyncio.sleep(1.0)
            assert bodies(fake)["the unknown one"] == 1, name
            assert max(bodies(fake).values()) == 1, name
            ready = await api(config, "/readyz")
            assert ready["providers"]["twilio"]["operations"]["lookup"]["state"] == "ok"
        assert set(statuses(config)) <= {"sent", "delivered"}, statuses(config)

    await together(*(lambda n=n, f=f: run(n, f) for n, f in faults.items()))


async def _delivered(config: Path, message_id: int) -> bool:
    return await status(config, message_id) == "delivered"


async def test_a_provider_outage_of_a_minute_loses_nothing_and_resumes_within_5s(
        tmp_path: Path) -> None:
    """A minute with connections refused, and a minute of 503s: sending resumes within 5 s
    of the end, nothing lost, nothing sent twice, nothing failed that should be retried."""
    rate = 10

    async def run(kind: str) -> None:
        async with gateway(tmp_path / kind, rate=rate) as (fake, config):
            before = [f"before #{n}" for n in range(100)]
            during = [f"during #{n}" for n in range(100)]
            for n, body in enumerate(before):
                await queue(config, f"+1415555{n:04d}", body)
            await eventually(lambda: len(fake.created) >= 20, what=f"{kind}: sending")
            if kind == "refused":
                await fake.go_away()
            else:
                fake.fail(status=503)
            began = time.monotonic()
            for n, body in enumerate(during):
                await queue(config, f"+1646555{n:04d}", body)
            await asyncio.sleep(OUTAGE - (time.monotonic() - began))
            tried = len(fake.calls["create"])
            ready = await api(config, "/readyz")
            assert ready["providers"]["twilio"]["operations"]["send"]["state"] == "down"
            if kind == "refused":
                await fake.come_back()
            else:
                fake.heal()
            ended = time.monotonic()
            await eventually(lambda: any(r.at > ended for r in fake.created), seconds=5,
                             what=f"{kind}: sending again within 5 s of the end")
            await eventually(lambda: set(bodies(fake)) >= set(before + during), seconds=60,
                             what=f"{kind}: every message sent")
            await asyncio.sleep(1.5)
            counts = bodies(fake)
            assert [b for b, n in counts.items() if n > 1] == [], kind
            if kind == "503":
                # While down, one probe at a time: not a send per message per retry.
                failed_during = tried - sum(1 for r in fake.created if r.at < began)
                assert failed_during <= 60, failed_during
        assert set(statuses(config)) <= {"sent", "delivered"}, statuses(config)
        with sqlite3.connect(read(config).database_path()) as conn:
            [(failures,)] = conn.execute(
                "SELECT COUNT(*) FROM outbound_events WHERE event IN ('retry',"
                " 'outcome_unknown')").fetchall()
        # Every failed attempt is in the log; a minute of outage cost few of them.
        assert 5 <= failures <= 60, (kind, failures)

    await together(lambda: run("refused"), lambda: run("503"))


async def test_the_crm_relay_through_two_minutes_down_while_customers_text(
        tmp_path: Path) -> None:
    """The CRM down for 120 s while customers text and a campaign runs: about a dozen
    attempts in all, then every event in order within 45 s of its return, though the first
    attempt after the return meets a 500."""
    crm = CrmReceiver(SECRET, free_port())
    await crm.start()
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, send_callbacks=True)
    await fake.start()
    proc = None
    port = free_port()
    try:
        config = config_file(tmp_path, port, fake.base_url, rate=10, rest=f"""
[[sync.endpoints]]
name = "crm"
url = "{crm.url}"
secret = "{SECRET}"
batch_size = 200
""")
        audience = [f"+1212555{n:04d}" for n in range(300)]
        await seed(config, [(p, "deals", Kind.OPT_IN_CONFIRMED) for p in audience])
        proc = await serve(config, tmp_path / "serve.log", wait=True)

        async def drained() -> bool:
            state = (await api(config, "/api/v1/sync/status"))["endpoints"][0]
            return bool(state["backlog"] == 0)

        await eventually(drained, seconds=15, what="the CRM up to date before the outage")
        crm.status = 503
        down_at, attempts_before = time.monotonic(), crm.requests

        campaign = await campaign_now(config, "Acme: 20% off today. Reply STOP to opt out.")
        url = f"http://127.0.0.1:{port}/webhooks/twilio/sms"
        texts = 0
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - down_at < CRM_OUTAGE:
                form = {"MessageSid": f"SM{texts:032d}", "AccountSid": ACCOUNT_SID,
                        "From": audience[texts % 50], "To": "12345",
                        "Body": ("HELP", "thanks!", "JOIN")[texts % 3]}
                async with session.post(url, data=form,
                                        headers=twilio_signature(url, form)) as response:
                    assert response.status == 200
                texts += 1
                await asyncio.sleep(0.1)
        attempts = crm.requests - attempts_before
        sync = await api(config, "/api/v1/sync/status")
        assert sync["endpoints"][0]["state"] == "down"
        assert sync["endpoints"][0]["backlog"] > texts  # texts, replies, campaign, receipts
        crm.status = 200
        crm.fail_next = 1  # the first attempt after the return gets a 500
        back_at = time.monotonic()
        await eventually(drained, seconds=45, what="every event delivered")
        took = time.monotonic() - back_at
        assert crm.failures == 1
        # 0.5–1, 1–2, 2–4 … s apart, then 15–30 s: about a dozen over two minutes.
        assert 5 <= attempts <= 14, attempts

        async def campaign_sent() -> bool:
            stats = await api(config, f"/api/v1/campaigns/{campaign}/stats")
            return bool(stats["sent"] == len(audience))

        await eventually(campaign_sent, seconds=30, what="the campaign sent to everyone")
        await eventually(drained, seconds=10, what="its last events delivered")
    finally:
        await stop(proc)
        await fake.close()
        await crm.stop()
    with sqlite3.connect(read(config).database_path()) as conn:
        stored = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT event_id, phone, seq FROM profile_events")}
    arrived = [e["id"] for e in crm.events]
    assert set(arrived) == set(stored), "an event was skipped or invented"
    per_phone: dict[str, list[int]] = defaultdict(list)
    for event in crm.events:
        if not per_phone[event["phone"]] or per_phone[event["phone"]][-1] != event["sequence"]:
            per_phone[event["phone"]].append(event["sequence"])
    for phone, sequences in per_phone.items():
        assert sequences == list(range(1, len(sequences) + 1)), phone  # in order, no gap
    assert took < 45, took


async def test_receipts_lost_while_the_gateway_was_down_are_recovered(tmp_path: Path
                                                                      ) -> None:
    """SIGKILL mid-campaign with receipts in flight: Twilio never sends those again, yet after
    the restart every message the carrier delivered is delivered in the stats."""
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, send_callbacks=True, callback_delay=1.0)
    await fake.start()
    proc = None
    try:
        config = config_file(tmp_path, free_port(), fake.base_url, rate=60, outbound="""
receipt_check_after_seconds = 3.0
receipt_recheck_max_seconds = 6.0""")
        audience = [f"+1305555{n:04d}" for n in range(400)]
        await seed(config, [(p, "deals", Kind.OPT_IN_CONFIRMED) for p in audience])
        log = tmp_path / "serve.log"
        proc = await serve(config, log, wait=True)
        campaign = await campaign_now(config, "Acme: flash sale. Reply STOP to opt out.")
        await eventually(lambda: len(fake.created) >= 150, seconds=20, what="sending")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await asyncio.sleep(2.5)  # the receipts in flight meet a dead gateway: lost for good
        lost = fake.callback_responses.count(0)
        assert lost >= 20, lost
        proc = await serve(config, log, wait=True)
        restarted = time.monotonic()

        async def complete() -> bool:
            stats = await api(config, f"/api/v1/campaigns/{campaign}/stats")
            return bool(stats["delivered"] == len(fake.delivered()) == len(audience))

        await eventually(complete, seconds=30, what="every delivered message counted")
        assert time.monotonic() - restarted < 3.0 + 6.0 + 15.0
        reached = Counter(r.form["To"] for r in fake.created)
        assert set(reached) == set(audience) and max(reached.values()) == 1
        assert "receipt(s) for 12345 fetched from twilio" in log.read_text()
    finally:
        await stop(proc)
        await fake.close()
