"""Profiles: every exchange lands on the profile in the same transaction; the profile API."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import pytest

from gateway import keys
from gateway.db import Tx
from gateway.models import InboundMessage
from gateway.profiles import derived_time_zones, new_event_id
from tests.conftest import admin

PHONE = "+12125550101"


async def text(client: Any, sid: str, body: str, sender: str = PHONE) -> None:
    response = await client.post("/webhooks/twilio/sms", data={
        "MessageSid": sid, "From": sender, "To": "12345", "Body": body})
    assert response.status == 200


async def get(client: Any, path: str, **params: str) -> Any:
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    response = await client.get(path + query, headers=admin())
    return response.status, await response.json()


async def test_an_inbound_text_creates_and_counts_on_the_profile(client: Any) -> None:
    await text(client, "SM1", "JOIN")
    await text(client, "SM2", "hello again")
    await text(client, "SM2", "hello again")  # the provider retried: counted once
    status, profile = await get(client, f"/api/v1/profiles/{PHONE}")
    assert status == 200
    assert profile["counters"] == {"inbound": 2, "outbound": 0, "delivered": 0, "failed": 0}
    assert profile["last_inbound_at"] is not None
    assert profile["derived_time_zones"] == ["America/New_York"]
    assert profile["consent"] == {"deals": "none"}
    status, timeline = await get(client, f"/api/v1/profiles/{PHONE}/timeline")
    assert [(e["sequence"], e["type"], e["data"]["body"]) for e in timeline["events"]] == [
        (1, "message.in", "JOIN"), (2, "message.in", "hello again")]


async def test_the_message_and_the_profile_commit_together(client: Any) -> None:
    """A failure while updating the profile leaves no half-stored message behind."""
    db = client.app[keys.DB]

    async def break_profiles(tx: Any) -> None:
        await tx.execute("CREATE TRIGGER no_events BEFORE INSERT ON profile_events"
                         " BEGIN SELECT RAISE(ABORT, 'timeline unavailable'); END")

    await db.write(break_profiles)
    response = await client.post("/webhooks/twilio/sms", data={
        "MessageSid": "SM9", "From": PHONE, "To": "12345", "Body": "hi"})
    assert response.status == 500
    assert await db.fetchall("SELECT * FROM inbound_messages") == []
    assert await db.fetchall("SELECT * FROM profiles") == []
    await db.write(lambda tx: tx.execute("DROP TRIGGER no_events"))
    await text(client, "SM9", "hi")  # the provider's retry now succeeds, once
    assert len(await db.fetchall("SELECT * FROM inbound_messages")) == 1


async def test_events_of_one_write_are_numbered_in_order_and_counted(client: Any) -> None:
    """The timeline is written when the write ends, in a few statements; reading the
    profile inside the write sees what the write has recorded so far."""
    store, db = client.app[keys.PROFILES], client.app[keys.DB]
    at = client.app[keys.CLOCK].now()
    msg = InboundMessage("twilio", "SM1", PHONE, "12345", "JOIN", at)

    async def exchange(tx: Tx) -> tuple[int, int, list[str]]:
        await store.on_inbound(tx, msg)
        ids = [await store.record(tx, PHONE, "consent.changed", {"status": "pending"}, at)]
        seen = await store.load(tx, PHONE)  # the first two events are written here
        await store.on_outbound(tx, [(PHONE, {"body": "Reply Y"}), ("+12125550102", {})], at)
        ids.append(await store.record(tx, PHONE, "conversation.started", {}, at))
        assert seen is not None
        return seen.inbound_count, seen.seq, ids

    inbound, seq, ids = await db.write(exchange)
    assert (inbound, seq) == (1, 2)
    rows = await db.fetchall("SELECT id, event_id, phone, seq, type FROM profile_events"
                             " ORDER BY id")
    assert [(r["phone"], r["seq"], r["type"]) for r in rows] == [
        (PHONE, 1, "message.in"), (PHONE, 2, "consent.changed"), (PHONE, 3, "message.out"),
        ("+12125550102", 1, "message.out"), (PHONE, 4, "conversation.started")]
    assert [r["event_id"] for r in rows if r["type"] in ("consent.changed",
                                                         "conversation.started")] == ids
    status, profile = await get(client, f"/api/v1/profiles/{PHONE}")
    assert status == 200 and profile["counters"]["inbound"] == 1
    assert profile["counters"]["outbound"] == 1
    assert profile["last_inbound_at"] is not None and profile["last_outbound_at"] is not None


async def test_concurrent_texts_keep_every_timeline_whole_and_in_order(client: Any) -> None:
    """Many webhooks sharing group commits: each customer's events are numbered 1..n without
    gaps, in commit order, and the counters agree with the messages stored."""
    senders = [f"+1212555{200 + i:04d}" for i in range(12)]
    script = ("JOIN", "Y", "HELP", "what?", "STOP", "START")
    await asyncio.gather(*(
        text(client, f"SM{step}x{n}", body, sender)
        for step, body in enumerate(script) for n, sender in enumerate(senders)))
    db = client.app[keys.DB]

    async def one(sql: str) -> Any:
        row = await db.fetchone(sql)
        return row[0] if row else None

    assert await one("SELECT COUNT(*) FROM inbound_messages") == len(script) * len(senders)
    assert await one("SELECT SUM(inbound_count) FROM profiles") == len(script) * len(senders)
    assert await one("SELECT SUM(outbound_count) FROM profiles") == await one(
        "SELECT COUNT(*) FROM outbound_messages")
    assert await one("SELECT COUNT(*) FROM profile_events WHERE type = 'message.out'") == \
        await one("SELECT COUNT(*) FROM outbound_messages")
    assert await one("SELECT COUNT(*) FROM profiles p WHERE seq != (SELECT COUNT(*)"
                     " FROM profile_events e WHERE e.phone = p.phone)") == 0
    assert await one("SELECT COUNT(*) FROM (SELECT phone FROM profile_events GROUP BY phone"
                     " HAVING MAX(seq) != COUNT(*) OR MIN(seq) != 1)") == 0
    assert await one("SELECT COUNT(*) FROM profile_events a JOIN profile_events b"
                     " ON a.phone = b.phone AND a.seq < b.seq AND a.id > b.id") == 0


async def test_an_erasure_covers_events_recorded_earlier_in_the_same_write(
        client: Any) -> None:
    store, db = client.app[keys.PROFILES], client.app[keys.DB]
    at = client.app[keys.CLOCK].now()

    async def record_then_erase(tx: Tx) -> None:
        await store.record(tx, PHONE, "conversation.answer", {"answer": "my secret"}, at)
        await store.erase(tx, PHONE, at)

    await db.write(record_then_erase)
    rows = await db.fetchall("SELECT type, data_json FROM profile_events ORDER BY id")
    assert [(r["type"], json.loads(r["data_json"])) for r in rows] == [
        ("conversation.answer", {"redacted": True}),
        ("profile.erased", {"suppressed": True})]


def test_event_ids_are_unique_hex_idempotency_keys() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


async def test_delivery_receipts_count_on_a_known_profile(client: Any) -> None:
    await text(client, "SM1", "JOIN")
    for sid, status in (("SMa", "sent"), ("SMa", "delivered"), ("SMb", "undelivered")):
        response = await client.post("/webhooks/twilio/status", data={
            "MessageSid": sid, "MessageStatus": status, "To": PHONE, "From": "12345"})
        assert response.status == 200
    await client.post("/webhooks/twilio/status", data={
        "MessageSid": "SMc", "MessageStatus": "delivered", "To": "+12125559999"})
    _, profile = await get(client, f"/api/v1/profiles/{PHONE}")
    assert profile["counters"]["delivered"] == 1 and profile["counters"]["failed"] == 1
    status, _ = await get(client, "/api/v1/profiles/+12125559999")
    assert status == 404  # a receipt alone does not invent a customer


async def test_patch_changes_what_it_names_and_records_the_diff(client: Any) -> None:
    response = await client.patch(f"/api/v1/profiles/{PHONE}", headers=admin(), json={
        "first_name": "Ada", "email": "ada@example.com", "time_zone": "Europe/London",
        "attributes": {"plan": "gold", "visits": 3, "vip": True}, "add_tags": ["beta"]})
    assert response.status == 200
    profile = await response.json()
    assert profile["first_name"] == "Ada" and profile["time_zone"] == "Europe/London"
    assert profile["attributes"] == {"plan": "gold", "visits": 3, "vip": True}
    response = await client.patch(f"/api/v1/profiles/{PHONE}", headers=admin(), json={
        "attributes": {"visits": 4, "plan": None}, "remove_tags": ["beta"],
        "add_tags": ["vip"]})
    profile = await response.json()
    assert profile["first_name"] == "Ada"  # untouched
    assert profile["attributes"] == {"visits": 4, "vip": True}
    assert profile["tags"] == ["vip"]
    _, timeline = await get(client, f"/api/v1/profiles/{PHONE}/timeline")
    second = timeline["events"][1]["data"]
    assert second["source"] == "api"
    assert second["changes"]["attributes"]["new"] == {"visits": 4, "vip": True}
    assert second["changes"]["tags"] == {"old": ["beta"], "new": ["vip"]}


async def test_put_replaces_and_a_no_op_records_nothing(client: Any) -> None:
    await client.patch(f"/api/v1/profiles/{PHONE}", headers=admin(),
                       json={"first_name": "Ada", "last_name": "L", "tags": ["a", "b"]})
    response = await client.put(f"/api/v1/profiles/{PHONE}", headers=admin(),
                                json={"first_name": "Grace"})
    profile = await response.json()
    assert (profile["first_name"], profile["last_name"], profile["tags"]) == ("Grace", None, [])
    await client.put(f"/api/v1/profiles/{PHONE}", headers=admin(), json={"first_name": "Grace"})
    _, timeline = await get(client, f"/api/v1/profiles/{PHONE}/timeline")
    assert len(timeline["events"]) == 2  # the identical PUT changed nothing


@pytest.mark.parametrize(("body", "message"), [
    ({"email": "not-an-email"}, "email: 'not-an-email' is not an email address"),
    ({"time_zone": "Mars/Base"}, "time_zone: 'Mars/Base' is not an IANA time zone"),
    ({"language": "english please"}, "language:"),
    ({"favourite": 1}, "favourite: unknown profile field"),
    ({"attributes": {"bad name": 1}}, "attributes.bad name: names are letters"),
    ({"attributes": {"nested": {"a": 1}}}, "values are strings, numbers, booleans or null"),
    ({"tags": "vip"}, "tags: expected an array"),
    ({"add_tags": ["a,b"]}, "is not a tag"),
    ([1, 2], "the body must be a JSON object"),
])
async def test_invalid_changes_are_refused_and_change_nothing(client: Any, body: Any,
                                                              message: str) -> None:
    response = await client.patch(f"/api/v1/profiles/{PHONE}", headers=admin(), json=body)
    assert response.status == 400
    assert message in (await response.json())["error"]["message"]
    status, _ = await get(client, f"/api/v1/profiles/{PHONE}")
    assert status == 404


async def test_bad_json_and_bad_numbers(client: Any) -> None:
    response = await client.patch(f"/api/v1/profiles/{PHONE}", headers=admin(),
                                  data="{not json", )
    assert response.status == 400
    assert "not valid JSON" in (await response.json())["error"]["message"]
    status, body = await get(client, "/api/v1/profiles/12")
    assert status == 400 and body["error"]["code"] == "invalid_number"


async def test_national_format_in_the_path_finds_the_same_profile(client: Any) -> None:
    await text(client, "SM1", "JOIN")
    status, profile = await get(client, "/api/v1/profiles/(212)%20555-0101")
    assert status == 200 and profile["phone"] == PHONE


async def test_list_with_a_segment_and_cursor_pagination(client: Any) -> None:
    for n in range(7):
        await client.patch(f"/api/v1/profiles/+1212555{n:04d}", headers=admin(), json={
            "language": "fa" if n % 2 else "en", "attributes": {"age": 20 + n},
            "add_tags": ["vip"] if n < 3 else []})
    segment = {"all": [{"attribute": "age", "op": "gte", "value": 21},
                       {"any": [{"tag": "vip"}, {"field": "language", "op": "eq",
                                                 "value": "fa"}]}]}
    phones: list[str] = []
    cursor = ""
    for _ in range(5):
        params = {"segment": json.dumps(segment), "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        status, page = await get(client, "/api/v1/profiles", **params)
        assert status == 200
        phones += [p["phone"] for p in page["profiles"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    # ages 21..26 qualify; among them vip (n<3: 1,2) or fa (odd n: 1,3,5)
    assert phones == ["+12125550001", "+12125550002", "+12125550003", "+12125550005"]
    status, body = await get(client, "/api/v1/profiles", segment='{"attribute": "x", "op": "~"}')
    assert status == 400 and "segment.op" in body["error"]["message"]
    status, body = await get(client, "/api/v1/profiles", cursor="%%%")
    assert status == 400


async def test_timeline_pages(client: Any) -> None:
    for n in range(5):
        await text(client, f"SM{n}", f"message {n}")
    _, first = await get(client, f"/api/v1/profiles/{PHONE}/timeline", limit="3")
    assert [e["sequence"] for e in first["events"]] == [1, 2, 3]
    _, second = await get(client, f"/api/v1/profiles/{PHONE}/timeline", limit="3",
                          cursor=first["next_cursor"])
    assert [e["sequence"] for e in second["events"]] == [4, 5]
    assert second["next_cursor"] is None


def test_derived_time_zones() -> None:
    assert derived_time_zones("+989121234567") == ("Asia/Tehran",)
    assert len(derived_time_zones("+61412345678")) > 1  # Australia spans several zones
    assert derived_time_zones("+15551234567") == ()  # 555: no known zone
