"""Push and pull campaigns through the API: the production app on loopback, the real twilio
library, the Twilio-shaped fake with signed receipts, a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consent import ConsentEvent, Kind
from gateway import keys
from gateway.clock import FrozenClock, isoformat
from gateway.profiles import ProfileChanges
from tests.conftest import (
    ACCOUNT_SID,
    ConfigFactory,
    admin,
    eventually,
    free_port,
    on_the_fake,
    sample,
    twilio_signature,
)
from tests.fakes.twilio_server import FakeTwilio

EVIDENCE = {"form_url": "https://acme.example/join", "ip": "203.0.113.7"}


def programs(**deals: Any) -> list[dict[str, Any]]:
    return [{"id": "deals", "name": "Acme Deals", "short_code": "12345", "keywords": ["JOIN"],
             "help_text": "Acme Deals: help@acme.example. Reply STOP to cancel.",
             "quiet_hours": "always", **deals},
            {"id": "news", "name": "Acme News", "short_code": "12345", "keywords": ["NEWS"],
             "help_text": "Acme News: help@acme.example. Reply STOP to cancel.",
             "quiet_hours": "always"}]


@pytest.fixture
def start(make_config: ConfigFactory, make_client: Any, fake: FakeTwilio
          ) -> Callable[..., Any]:
    async def go(clock: Any = None, rate: float = 1000, deals: dict[str, Any] | None = None,
                 **changes: Any) -> Any:
        port = free_port()
        raw: dict[str, Any] = {
            **on_the_fake(fake, port, timeout=1.0, rate=rate),
            "programs": programs(**(deals or {})),
            "campaigns": {"batch_size": 50, "queue_ahead": 20},
            **changes}
        return await make_client(make_config(**raw), port=port, clock=clock)

    return go


def phones(n: int, first: int = 100) -> list[str]:
    return [f"+1212555{first + i:04d}" for i in range(n)]


async def opt_in(client: Any, numbers: Sequence[str], program: str = "deals",
                 kind: Kind = Kind.OPT_IN_CONFIRMED, names: dict[str, str] | None = None,
                 **profile: Any) -> None:
    """Consent and profiles written through the ledger and the profile store, as the
    consent API and the importer do, in one transaction."""
    app = client.server.app
    ledger, store = app[keys.CONSENT].ledger, app[keys.PROFILES]
    now = app[keys.CLOCK].now()

    async def write(tx: Any) -> None:
        for phone in numbers:
            fields = {**profile, **({"first_name": names[phone]} if names and phone in names
                                    else {})}
            if fields:
                await store.apply(tx, phone, ProfileChanges(
                    fields={k: v for k, v in fields.items() if k != "tags"},
                    tags_add=tuple(fields.get("tags", ()))), now, source="test")
            await ledger.record(tx, ConsentEvent(phone=phone, program_id=program, kind=kind,
                                                 source="web_form", occurred_at=now,
                                                 evidence=EVIDENCE))

    await app[keys.DB].write(write)


async def api(client: Any, method: str, path: str, body: Any = None,
              expect: int | None = 200) -> Any:
    response = await client.request(method, path, headers=admin(),
                                    json=body if body is not None else None)
    payload = await response.json()
    if expect is not None:
        assert response.status == expect, payload
    return payload


async def create(client: Any, **definition: Any) -> dict[str, Any]:
    body = {"name": "Spring sale", "program": "deals",
            "template": "Hi {first_name|there}, 20% off this week. Reply STOP to opt out.",
            **definition}
    body = {k: v for k, v in body.items() if v is not None}
    return dict(await api(client, "POST", "/api/v1/campaigns", body, expect=201))


async def status_of(client: Any, campaign_id: str) -> str:
    return str((await api(client, "GET", f"/api/v1/campaigns/{campaign_id}"))["status"])


async def has_status(client: Any, campaign_id: str, status: str) -> bool:
    return await status_of(client, campaign_id) == status


def sent_to(fake: FakeTwilio) -> Counter[str]:
    return Counter(r.form["To"] for r in fake.created)


async def test_push_campaign_reaches_exactly_the_opted_in_audience_once(
        start: Any, fake: FakeTwilio) -> None:
    client = await start()
    opted = phones(3)
    await opt_in(client, opted, names={opted[0]: "Ada"})
    stopped, pending, other, nobody = phones(4, first=200)[:4]
    await opt_in(client, [stopped])
    await opt_in(client, [stopped], kind=Kind.OPT_OUT)
    await opt_in(client, [pending], kind=Kind.OPT_IN_REQUESTED)
    await opt_in(client, [other], program="news")
    await opt_in(client, [nobody], program="news", kind=Kind.OPT_OUT)

    campaign = await create(client)
    assert campaign["status"] == "draft"
    preview = await api(client, "POST", f"/api/v1/campaigns/{campaign['id']}/preview")
    assert preview["audience"] == 3
    assert preview["variants"][0]["encoding"] == "GSM-7"
    assert {s["body"] for s in preview["samples"]} == {
        "Hi Ada, 20% off this week. Reply STOP to opt out.",
        "Hi there, 20% off this week. Reply STOP to opt out."}
    scheduled = await api(client, "POST", f"/api/v1/campaigns/{campaign['id']}/schedule",
                          {"now": True})
    assert scheduled["status"] in ("scheduled", "running")
    await eventually(lambda: has_status(client, campaign["id"], "completed"), seconds=15,
                     what="campaign completed")
    assert sent_to(fake) == Counter(opted)
    assert {r.form["Body"] for r in fake.created if r.form["To"] == opted[0]} == {
        "Hi Ada, 20% off this week. Reply STOP to opt out."}

    async def all_delivered() -> bool:
        stats = await api(client, "GET", f"/api/v1/campaigns/{campaign['id']}/stats")
        return bool(stats["delivered"] == 3)

    await eventually(all_delivered, what="receipts counted")
    stats = await api(client, "GET", f"/api/v1/campaigns/{campaign['id']}/stats")
    assert {k: stats[k] for k in ("audience", "queued", "sent", "delivered", "pending")} == {
        "audience": 3, "queued": 3, "sent": 3, "delivered": 3, "pending": 0}
    assert stats["failed"] == {} and stats["skipped"] == {}
    assert stats["runs"] == 1
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "mcrm_campaigns", kind="push", status="completed") == 1
    # Every campaign message names the campaign in the delivery log, with the opt-in
    # that allowed it; each recipient's timeline records the membership.
    log = await api(client, "GET", f"/api/v1/messages?campaign={campaign['id']}")
    assert len(log["messages"]) == 3
    assert all(m["purpose"] == "marketing" and m["consent_event_id"] for m in log["messages"])
    # The audit view: the campaign's message with the opt-in event that allowed it.
    history = await api(client, "GET", f"/api/v1/consent/{opted[0]}")
    [marketing] = history["marketing_messages"]
    opt_ins = {e["id"] for e in history["history"] if e["kind"] == "opt_in_confirmed"}
    assert marketing["consent_event_id"] in opt_ins
    timeline = await api(client, "GET", f"/api/v1/profiles/{opted[0]}/timeline")
    types = [e["type"] for e in timeline["events"]]
    assert "campaign.queued" in types and "message.out" in types


@pytest.mark.parametrize(("definition", "status", "words"), [
    ({"template": "Hi {frist_name}"}, 400, "unknown field {frist_name}"),
    ({"template": "Hi {first name}"}, 400, "'{first name}' is not a placeholder"),
    ({"program": "nope"}, 400, "program: unknown program 'nope'"),
    ({"template": None, "variants": [{"name": "A", "template": "a", "percent": 60},
                                     {"name": "B", "template": "b", "percent": 30}]},
     400, "add up to 90, not 100"),
    ({"audience": {"field": "shoe_size", "op": "eq", "value": 9}}, 400, "audience.field"),
    ({"schedule": {"cron": "99 * * * *"}}, 400, "schedule.cron"),
    ({"schedule": {"at": "tomorrow"}}, 400, "schedule.at"),
    ({"colour": "red"}, 400, "colour: not a field of a push campaign"),
])
async def test_a_definition_with_a_mistake_is_refused_naming_it(
        start: Any, definition: dict[str, Any], status: int, words: str) -> None:
    client = await start()
    body = {"name": "x", "program": "deals", "template": "Hi", **definition}
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post("/api/v1/campaigns", headers=admin(), json=body)
    payload = await response.json()
    assert response.status == status, payload
    assert words in payload["error"]["message"]


async def test_scheduling_errors_and_edits_are_clear(start: Any) -> None:
    client = await start(rate=1)
    campaign = await create(client)
    path = f"/api/v1/campaigns/{campaign['id']}"
    empty = await api(client, "POST", f"{path}/schedule", {"now": True}, expect=409)
    assert "audience is empty" in empty["error"]["message"]
    await opt_in(client, phones(3))
    past = await api(client, "POST", f"{path}/schedule",
                     {"at": "2020-01-01T10:00:00+00:00"}, expect=400)
    assert "in the past" in past["error"]["message"]
    missing = await api(client, "POST", f"{path}/schedule", expect=400)
    assert "schedule: required" in missing["error"]["message"]
    edited = await api(client, "PATCH", path, {"template": "Hello {first_name|friend}"})
    assert edited["definition"]["template"] == "Hello {first_name|friend}"
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    scheduled = await api(client, "POST", f"{path}/schedule", {"at": at.isoformat()})
    assert scheduled["status"] == "scheduled"
    assert scheduled["next_run_at"] == at.isoformat()
    again = await api(client, "PATCH", path, {"name": "late change"}, expect=409)
    assert "only a draft can be edited" in again["error"]["message"]
    await api(client, "POST", f"{path}/schedule", {"now": True}, expect=409)
    await api(client, "POST", f"{path}/resume", expect=409)
    cancelled = await api(client, "POST", f"{path}/cancel")
    assert cancelled["status"] == "cancelled"
    await api(client, "POST", f"{path}/cancel", expect=409)
    await api(client, "GET", "/api/v1/campaigns/cmp_nope", expect=404)
    listed = await api(client, "GET", "/api/v1/campaigns?status=cancelled")
    assert [c["id"] for c in listed["campaigns"]] == [campaign["id"]]


async def test_ab_variants_split_by_percentage_with_stats_per_variant(
        start: Any, fake: FakeTwilio) -> None:
    client = await start()
    audience = phones(200)
    await opt_in(client, audience)
    campaign = await create(client, template=None, variants=[
        {"name": "short", "template": "20% off!", "percent": 30},
        {"name": "long", "template": "Hi {first_name|there}: 20% off all week", "percent": 70}])
    await api(client, "POST", f"/api/v1/campaigns/{campaign['id']}/schedule", {"now": True})
    await eventually(lambda: has_status(client, campaign["id"], "completed"), seconds=20,
                     what="campaign completed")
    assert sent_to(fake) == Counter(audience)
    bodies = Counter(r.form["Body"] for r in fake.created)
    assert bodies == {"20% off!": 60, "Hi there: 20% off all week": 140}
    stats = await api(client, "GET", f"/api/v1/campaigns/{campaign['id']}/stats")
    assert [(v["name"], v["audience"], v["sent"]) for v in stats["variants"]] == [
        ("short", 60, 60), ("long", 140, 140)]


async def test_pause_resume_and_cancel_take_effect_within_a_second(
        start: Any, fake: FakeTwilio) -> None:
    client = await start(rate=40)
    audience = phones(120)
    await opt_in(client, audience)
    campaign = await create(client)
    path = f"/api/v1/campaigns/{campaign['id']}"
    await api(client, "POST", f"{path}/schedule", {"now": True})
    await eventually(lambda: len(fake.created) >= 10, what="sending started")
    await api(client, "POST", f"{path}/pause")
    paused_at = time.monotonic()
    assert await status_of(client, campaign["id"]) == "paused"
    await asyncio.sleep(1.5)
    late = [r for r in fake.created if r.at > paused_at + 1.0]
    assert late == [], f"{len(late)} messages left more than a second after the pause"
    during_pause = len(fake.created)
    assert during_pause < len(audience)
    stats = await api(client, "GET", f"{path}/stats")
    assert stats["pending"] + stats["sent"] + sum(stats["skipped"].values()) <= len(audience)

    await api(client, "POST", f"{path}/resume")
    await eventually(lambda: len(fake.created) > during_pause, seconds=1.0,
                     what="sending again within a second of the resume")
    await eventually(lambda: len(fake.created) > during_pause + 10, what="sending again")
    await api(client, "POST", f"{path}/cancel")
    cancelled_at = time.monotonic()
    await asyncio.sleep(1.5)
    assert [r for r in fake.created if r.at > cancelled_at + 1.0] == []
    assert max(sent_to(fake).values()) == 1  # nobody twice, across pause and resume
    assert len(fake.created) < len(audience)

    async def settled() -> bool:
        stats = await api(client, "GET", f"{path}/stats")
        return bool(stats["pending"] == 0)

    await eventually(settled, what="nothing pending after the cancel")
    stats = await api(client, "GET", f"{path}/stats")
    assert stats["audience"] == len(audience)
    assert stats["sent"] == len(fake.created)
    assert stats["sent"] + stats["skipped"]["campaign_cancelled"] == len(audience)
    assert await status_of(client, campaign["id"]) == "cancelled"


async def test_opt_out_during_the_run_is_honoured_and_attributed(
        start: Any, fake: FakeTwilio) -> None:
    client = await start(rate=20)
    audience = phones(60)
    await opt_in(client, audience)
    first, last = audience[0], audience[-1]
    campaign = await create(client)
    path = f"/api/v1/campaigns/{campaign['id']}"
    await api(client, "POST", f"{path}/schedule", {"now": True})
    await eventually(lambda: first in sent_to(fake), what="the first recipient reached")
    public = client.server.app[keys.CONFIG].service.public_url
    for n, (phone, text) in enumerate(((first, "STOP"), (last, "STOP"))):
        form = {"MessageSid": f"SM{n:032d}", "AccountSid": ACCOUNT_SID, "From": phone,
                "To": "12345", "Body": text, "NumSegments": "1"}
        response = await client.post("/webhooks/twilio/sms", data=form,
                                     headers=twilio_signature(
                                         f"{public}/webhooks/twilio/sms", form))
        assert response.status == 200
    await eventually(lambda: has_status(client, campaign["id"], "completed"), seconds=20,
                     what="campaign completed")
    assert last not in sent_to(fake)  # STOP before its turn: never sent
    stats = await api(client, "GET", f"{path}/stats")
    assert stats["skipped"] == {"opted_out": 1}
    assert stats["sent"] == len(audience) - 1
    assert stats["opt_outs"] == 1  # the first one opted out after the campaign's message
    assert stats["replies"] == 1


async def test_frequency_cap_skips_and_quiet_hours_defer(start: Any, fake: FakeTwilio
                                                           ) -> None:
    # 14:00 UTC: 09:00 in New York, 23:00 in Tokyo.
    clock = FrozenClock(datetime(2026, 11, 23, 14, 0, tzinfo=UTC))
    client = await start(clock=clock, deals={"quiet_hours": "default", "max_messages": 1,
                                             "cap_window_hours": 24})
    ny, capped, tokyo = phones(3)
    await opt_in(client, [ny, capped])
    await opt_in(client, [tokyo], time_zone="Asia/Tokyo")
    earlier = await create(client, template="Yesterday's deal", audience={"field": "phone",
                                                                          "op": "eq",
                                                                          "value": capped})
    await api(client, "POST", f"/api/v1/campaigns/{earlier['id']}/schedule", {"now": True})
    await eventually(lambda: capped in sent_to(fake), what="first campaign sent")
    campaign = await create(client)
    path = f"/api/v1/campaigns/{campaign['id']}"
    await api(client, "POST", f"{path}/schedule", {"now": True})

    async def decided() -> bool:
        stats = await api(client, "GET", f"{path}/stats")
        return bool(stats["sent"] == 1 and stats["skipped"] == {"frequency_cap": 1})

    await eventually(decided, what="ny sent, capped skipped")
    assert sent_to(fake)[ny] == 1 and sent_to(fake)[capped] == 1 and tokyo not in sent_to(fake)
    tokyo_msg = (await api(client, "GET", f"/api/v1/messages?campaign={campaign['id']}"
                                          f"&phone=%2B{tokyo[1:]}"))["messages"][0]
    assert (tokyo_msg["status"], tokyo_msg["reason"]) == ("deferred", "quiet_hours")
    assert tokyo_msg["next_attempt_at"].startswith("2026-11-23T23:00")  # 08:00 in Tokyo
    assert await status_of(client, campaign["id"]) == "running"  # deferred, never dropped


async def local_time_campaign(start: Any) -> tuple[Any, FrozenClock, str,
                                                  Callable[[], Any]]:
    """Paris and New York queued for 10:00 on 24 November in their own zones."""
    clock = FrozenClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    client = await start(clock=clock)
    await opt_in(client, [PARIS, NEW_YORK])
    campaign = await create(client)
    path = f"/api/v1/campaigns/{campaign['id']}"
    scheduled = await api(client, "POST", f"{path}/schedule",
                          {"local_time": "10:00", "date": "2026-11-24"})
    assert scheduled["next_run_at"] == "2026-11-23T20:00:00+00:00"  # 10:00 at UTC+14
    service = client.server.app[keys.CAMPAIGNS]
    clock.advance(timedelta(hours=8))
    await service.fire(campaign["id"], datetime(2026, 11, 23, 20, 0, tzinfo=UTC))

    async def waiting() -> dict[str, tuple[str, str | None, str | None]]:
        log = await api(client, "GET", f"/api/v1/messages?campaign={campaign['id']}")
        return {m["to"]: (m["status"], m["reason"], m["next_attempt_at"])
                for m in log["messages"]}

    await eventually(lambda: _len_is(waiting, 2), what="both queued")
    return client, clock, path, waiting


PARIS, NEW_YORK = "+33612345678", "+12125550100"
PARIS_AT, NEW_YORK_AT = "2026-11-24T09:00:00.000000+00:00", "2026-11-24T15:00:00.000000+00:00"


async def test_local_time_schedule_queues_each_recipient_for_their_own_morning(
        start: Any) -> None:
    *_, waiting = await local_time_campaign(start)
    assert {to: at for to, (_, _, at) in (await waiting()).items()} == {
        PARIS: PARIS_AT, NEW_YORK: NEW_YORK_AT}


async def test_a_pause_keeps_each_recipients_time_and_holds_what_comes_due(
        start: Any, fake: FakeTwilio) -> None:
    """Pausing must not turn a wait (local hour, quiet hours, a retry's back-off) into
    "send at the resume"."""
    client, clock, path, waiting = await local_time_campaign(start)
    before = await waiting()
    assert before[PARIS][2] == PARIS_AT and before[NEW_YORK][2] == NEW_YORK_AT
    await api(client, "POST", f"{path}/pause")
    assert await waiting() == before
    clock.advance(timedelta(hours=13, minutes=1))  # 09:01 UTC: Paris is due, still paused
    client.server.app[keys.OUTBOUND].wake()
    await eventually(lambda: _holds(waiting, PARIS), what="Paris held when due")
    await api(client, "POST", f"{path}/resume")
    await eventually(lambda: sent_to(fake) == Counter([PARIS]), what="Paris sent at resume")
    assert (await waiting())[NEW_YORK] == before[NEW_YORK]  # still waiting for its morning


async def _holds(fetch: Callable[[], Any], phone: str) -> bool:
    return bool((await fetch())[phone] == ("deferred", "paused", None))


async def _len_is(fetch: Callable[[], Any], n: int) -> bool:
    return len(await fetch()) == n


async def test_a_missed_run_within_grace_runs_at_start_and_one_beyond_is_recorded(
        start: Any, make_config: ConfigFactory, make_client: Any, fake: FakeTwilio) -> None:
    client = await start()
    await opt_in(client, phones(2))
    late, too_late = await create(client), await create(client, name="Too late")
    now = datetime.now(UTC)
    db = client.server.app[keys.DB]
    for campaign, due in ((late, now - timedelta(minutes=10)),
                          (too_late, now - timedelta(hours=3))):
        await api(client, "POST", f"/api/v1/campaigns/{campaign['id']}/schedule",
                  {"at": (now + timedelta(hours=1)).isoformat()})
        # As if the gateway had been down when the run was due.
        await db.write(lambda tx, c=campaign, d=due: tx.execute(
            "UPDATE campaigns SET next_run_at = ? WHERE id = ?", (isoformat(d), c["id"])))
    config = client.server.app[keys.CONFIG]
    await client.close()
    again = await make_client(config, port=free_port())
    await eventually(lambda: has_status(again, late["id"], "completed"), seconds=15,
                     what="late run done")
    assert sent_to(fake) == Counter(phones(2))
    shown = await api(again, "GET", f"/api/v1/campaigns/{too_late['id']}")
    assert shown["status"] == "completed"
    assert [r["status"] for r in shown["runs"]] == ["missed"]
    stats = await api(again, "GET", f"/api/v1/campaigns/{too_late['id']}/stats")
    assert (stats["missed_runs"], stats["sent"]) == (1, 0)


async def test_recurring_campaign_runs_again_and_fires_once_per_time(start: Any,
                                                                      fake: FakeTwilio) -> None:
    client = await start()
    await opt_in(client, phones(2))
    campaign = await create(client)
    path = f"/api/v1/campaigns/{campaign['id']}"
    scheduled = await api(client, "POST", f"{path}/schedule",
                          {"cron": "0 10 * * MON", "time_zone": "Europe/Paris"})
    first = datetime.fromisoformat(scheduled["next_run_at"])
    assert first.astimezone(UTC).hour == 9 and first.weekday() == 0  # 10:00 CET, a Monday
    service = client.server.app[keys.CAMPAIGNS]
    run = await service.fire(campaign["id"], first)
    assert run is not None
    assert await service.fire(campaign["id"], first) is None  # the same time: no second run
    await eventually(lambda: len(fake.created) == 2, what="first run sent")
    await service.wait_idle()
    shown = await api(client, "GET", path)
    assert shown["status"] == "scheduled"
    assert datetime.fromisoformat(shown["next_run_at"]) == first + timedelta(days=7)
    await service.fire(campaign["id"], first + timedelta(days=7))
    await eventually(lambda: len(fake.created) == 4, what="second run sent")
    assert sent_to(fake) == Counter({p: 2 for p in phones(2)})


# -- pull campaigns ----------------------------------------------------------------------

async def text(client: Any, phone: str, body: str, sid: str) -> list[str]:
    public = client.server.app[keys.CONFIG].service.public_url
    form = {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": phone, "To": "12345",
            "Body": body, "NumSegments": "1"}
    response = await client.post("/webhooks/twilio/sms", data=form, headers=twilio_signature(
        f"{public}/webhooks/twilio/sms", form))
    assert response.status == 200
    import re

    return re.findall(r"<Message[^>]*>([^<]*)</Message>", await response.text())


async def test_pull_campaign_hands_out_one_code_per_customer_inside_its_window(
        start: Any) -> None:
    clock = FrozenClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    client = await start(clock=clock, keywords=[
        {"words": ["HOURS"], "program": "deals", "reply": "Open 9-5"}])
    campaign = await api(client, "POST", "/api/v1/campaigns", {
        "name": "Winter coupons", "program": "deals", "kind": "pull",
        "keywords": ["SALE", "SOLDES"], "template": "Your code: {code}. Show it in store.",
        "starts_at": "2026-11-23T00:00:00Z", "ends_at": "2026-11-30T00:00:00Z",
        "outside_reply": "The winter sale is over, see you soon!",
        "exhausted_reply": "Sorry, all codes are gone.", "join": True}, expect=201)
    path = f"/api/v1/campaigns/{campaign['id']}"
    added = await api(client, "POST", f"{path}/codes", {"codes": ["AAA1", "BBB2", "AAA1"]})
    assert (added["added"], added["codes_total"]) == (2, 2)
    ada, bob, cy = phones(3)
    assert await text(client, ada, "SALE", "SM" + "1" * 32) == []  # a draft: not live yet
    await api(client, "POST", f"{path}/schedule")
    first = await text(client, ada, "sale", "SM" + "2" * 32)
    assert first[0] == "Your code: AAA1. Show it in store."
    assert "Reply Y" in first[1] or "reply y" in first[1].lower()  # double opt-in request
    assert (await text(client, ada, "Soldes!", "SM" + "3" * 32))[0] == \
        "Your code: AAA1. Show it in store."
    assert (await text(client, bob, "SALE", "SM" + "4" * 32))[0] == \
        "Your code: BBB2. Show it in store."
    assert await text(client, cy, "SALE", "SM" + "5" * 32) == ["Sorry, all codes are gone."]
    assert await text(client, cy, "HOURS", "SM" + "6" * 32) == ["Open 9-5"]
    consent = await api(client, "GET", f"/api/v1/consent/{ada}")
    assert {p["program"]: p["status"] for p in consent["programs"]}["deals"] == "pending"
    clock.advance(timedelta(days=8))
    assert await text(client, cy, "SALE", "SM" + "7" * 32) == [
        "The winter sale is over, see you soon!"]
    stats = await api(client, "GET", f"{path}/stats")
    assert stats == {"campaign": campaign["id"], "kind": "pull", "hits": 5,
                     "hits_in_window": 4, "unique_customers": 3, "codes_total": 2,
                     "codes_handed_out": 2, "codes_left": 0}
    assert (await api(client, "GET", path))["status"] == "completed"


async def test_pull_keywords_must_be_free(start: Any) -> None:
    client = await start(keywords=[
        {"words": ["HOURS"], "program": "deals", "reply": "Open 9-5"}])
    base = {"name": "x", "program": "deals", "kind": "pull", "template": "Hello"}
    for keyword, words in (("STOP", "reserved"), ("help", "reserved"),
                           ("JOIN", "joins a program"), ("HOURS", "a configured keyword")):
        refused = await api(client, "POST", "/api/v1/campaigns",
                            {**base, "keywords": [keyword]}, expect=409)
        assert words in refused["error"]["message"]
    first = await api(client, "POST", "/api/v1/campaigns", {**base, "keywords": ["SALE"]},
                      expect=201)
    await api(client, "POST", f"/api/v1/campaigns/{first['id']}/schedule")
    clash = await api(client, "POST", "/api/v1/campaigns", {**base, "keywords": ["sale"]},
                      expect=409)
    assert f"pull campaign {first['id']}" in clash["error"]["message"]
    await api(client, "POST", f"/api/v1/campaigns/{first['id']}/cancel")
    assert await text(client, phones(1)[0], "SALE", "SM" + "8" * 32) == []
    await api(client, "POST", "/api/v1/campaigns", {**base, "keywords": ["sale"]}, expect=201)
    await api(client, "POST", f"/api/v1/campaigns/{first['id']}/codes", {"codes": []},
              expect=400)


async def test_a_later_campaign_does_not_reach_an_erased_number(start: Any, fake: FakeTwilio
                                                                ) -> None:
    client = await start()
    kept, erased = phones(2)
    await opt_in(client, [kept, erased], first_name="Zebulon")
    response = await client.delete(f"/api/v1/profiles/{erased}", headers=admin())
    assert response.status == 200
    campaign = await create(client)
    await api(client, "POST", f"/api/v1/campaigns/{campaign['id']}/schedule", {"now": True})
    await eventually(lambda: has_status(client, campaign["id"], "completed"),
                     what="campaign completed")
    assert sent_to(fake) == Counter([kept])
    stats = await api(client, "GET", f"/api/v1/campaigns/{campaign['id']}/stats")
    assert stats["skipped"] == {"opted_out": 1}
    log = await api(client, "GET", f"/api/v1/messages?campaign={campaign['id']}")
    [refused] = [m for m in log["messages"] if m["to"] == erased]
    assert "Zebulon" not in refused["body"]  # rendered from the erased profile: no name left


async def test_stats_count_failures_by_error_code_and_match_the_receipts(
        start: Any, fake: FakeTwilio) -> None:
    client = await start()
    audience = phones(5)
    await opt_in(client, audience)
    fake.then(status=400, code=21211, message="The 'To' number is not a valid phone number")
    campaign = await create(client)
    await api(client, "POST", f"/api/v1/campaigns/{campaign['id']}/schedule", {"now": True})
    await eventually(lambda: has_status(client, campaign["id"], "completed"),
                     what="campaign completed")

    async def receipts_in() -> bool:
        stats = await api(client, "GET", f"/api/v1/campaigns/{campaign['id']}/stats")
        return bool(stats["delivered"] == len(fake.created))

    await eventually(receipts_in, what="receipts counted")
    stats = await api(client, "GET", f"/api/v1/campaigns/{campaign['id']}/stats")
    assert len(fake.created) == 4
    assert (stats["audience"], stats["sent"], stats["delivered"]) == (5, 4, 4)
    assert stats["failed"] == {"21211": 1}


async def test_a_campaign_whose_program_left_the_configuration_does_not_stop_the_start(
        start: Any, make_config: ConfigFactory, make_client: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    client = await start()
    await opt_in(client, phones(2), program="news")
    push = await create(client, program="news")
    await api(client, "POST", f"/api/v1/campaigns/{push['id']}/schedule",
              {"at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()})
    pull = await api(client, "POST", "/api/v1/campaigns", {
        "name": "p", "program": "news", "kind": "pull", "keywords": ["SALE"],
        "template": "x"}, expect=201)
    await api(client, "POST", f"/api/v1/campaigns/{pull['id']}/schedule")
    await client.close()
    again = await make_client(make_config(programs=programs()[:1]))
    response = await again.get("/readyz")
    assert response.status == 200, await response.text()
    assert f"campaign {push['id']} cannot run: program: unknown program 'news'" in caplog.text
    assert f"pull campaign {pull['id']} is not answered" in caplog.text
