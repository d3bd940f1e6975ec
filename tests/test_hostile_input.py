"""Hostile input to the admin API and the webhooks: each class gets a 400 that names the
field, and no table changes. (The declared-models rewrite will widen this table.)"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest

from gateway import keys, logs
from tests.conftest import admin, row_counts
from tests.test_webhooks import inbound, status


def cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


BIG = str(2**64)
QUERIES = [
    # (id, path, words in the error)
    ("superscript-limit", "/api/v1/messages?limit=²", "limit: expected a whole number"),
    ("arabic-indic-limit", "/api/v1/profiles?limit=٣", "limit: expected a whole number"),
    ("persian-limit", "/api/v1/campaigns?limit=۴", "limit: expected a whole number"),
    ("huge-limit", f"/api/v1/messages?limit={BIG}", "limit: expected a whole number"),
    ("zero-limit", "/api/v1/messages?limit=0", "limit: expected a whole number from 1"),
    ("superscript-id", "/api/v1/messages/²", "id: expected a whole number"),
    ("huge-id", f"/api/v1/messages/{BIG}", "id: expected a whole number"),
    ("zero-id", "/api/v1/messages/0", "id: expected a whole number from 1"),
    ("superscript-cursor", f"/api/v1/messages?cursor={cursor('²')}", "cursor:"),
    ("huge-cursor", f"/api/v1/messages?cursor={cursor(BIG)}", "cursor:"),
    ("unknown-parameter", "/api/v1/messages?direction=in", "direction: unknown query"),
    ("empty-since", "/api/v1/messages?since=", "since: empty"),
    ("empty-since-export", "/api/v1/consent/export?since=", "since: empty"),
]


@pytest.mark.parametrize(("path", "words"), [q[1:] for q in QUERIES],
                         ids=[q[0] for q in QUERIES])
async def test_bad_numbers_and_parameters_are_400s_that_name_them(
        client: Any, path: str, words: str) -> None:
    before = await row_counts(client)
    response = await client.get(path, headers=admin())
    assert response.status == 400, await response.text()
    assert words in (await response.json())["error"]["message"]
    assert await row_counts(client) == before


@pytest.mark.parametrize("outbound", ["²", "٣", BIG, "0", "-1"])
async def test_a_receipt_naming_no_possible_message_is_a_400(client: Any,
                                                             outbound: str) -> None:
    before = await row_counts(client)
    response = await client.post(f"/webhooks/twilio/status?outbound={outbound}",
                                 data=status())
    assert response.status == 400
    assert "outbound: expected a whole number" in (await response.json())["error"]["message"]
    assert await row_counts(client) == before


@pytest.mark.parametrize("segments", ["²", "٣", BIG])
async def test_a_num_segments_that_is_no_number_is_not_taken_for_one(
        client: Any, segments: str) -> None:
    response = await client.post("/webhooks/twilio/sms",
                                 data=inbound(NumSegments=segments, Body="hello"))
    assert response.status == 200  # the text is the customer's: stored all the same
    rows = await client.app[keys.DB].fetchall("SELECT num_segments FROM inbound_messages")
    assert [r[0] for r in rows] == [None]


DEEP = "[" * 20_000 + "]" * 20_000
BODIES = [
    # (id, path, method, body, words)
    ("deep-nesting", "/api/v1/messages", "POST", DEEP, "nested deeper than 64"),
    ("huge-number", "/api/v1/messages", "POST", '{"to": ' + "9" * 5000 + "}", "digits"),
    ("nan-attribute", "/api/v1/profiles/+12125550101", "PATCH",
     '{"attributes": {"score": NaN}}', "NaN is not a number JSON allows"),
    ("infinity", "/api/v1/campaigns", "POST", '{"name": Infinity}', "Infinity"),
    ("not-utf8", "/api/v1/consent", "POST", b'{"phone": "\xff"}', "not UTF-8"),
    ("deep-in-a-string-is-fine", "/api/v1/messages", "POST",
     '{"to": "+12125550101", "body": "' + "[" * 100 + '", "program": "nope"}',
     "program: unknown program"),
]


@pytest.mark.parametrize(("path", "method", "body", "words"), [b[1:] for b in BODIES],
                         ids=[b[0] for b in BODIES])
async def test_json_a_parser_chokes_on_is_a_400_and_changes_nothing(
        client: Any, path: str, method: str, body: str | bytes, words: str) -> None:
    before = await row_counts(client)
    response = await client.request(method, path, data=body, headers={
        **admin(), "Content-Type": "application/json"})
    assert response.status == 400, await response.text()
    assert words in (await response.json())["error"]["message"]
    assert await row_counts(client) == before


TIMES = [
    # (id, method, path, body, words)
    ("send-at-year-1", "POST", "/api/v1/messages", {
        "to": "+12125550101", "body": "hi", "program": "deals",
        "send_at": "0001-01-01T00:00:00+14:00"}, "send_at: 0001-01-01T00:00:00+14:00 is out of"),
    ("send-at-year-9999", "POST", "/api/v1/messages", {
        "to": "+12125550101", "body": "hi", "program": "deals",
        "send_at": "9999-12-31T23:59:59-14:00"}, "send_at: 9999-12-31T23:59:59-14:00 is out"),
    ("huge-validity", "POST", "/api/v1/messages", {
        "to": "+12125550101", "body": "hi", "program": "deals", "validity_seconds": 1e20},
     "validity_seconds"),
    ("campaign-at-year-1", "POST", "/api/v1/campaigns", {
        "name": "x", "program": "deals", "template": "Deals: hi. Reply STOP to end",
        "schedule": {"at": "0001-01-01T00:00:00+14:00"}}, "schedule.at: 0001-01-01"),
    ("campaign-local-date-year-1", "POST", "/api/v1/campaigns", {
        "name": "x", "program": "deals", "template": "Deals: hi. Reply STOP to end",
        "schedule": {"local_time": "10:00", "date": "0001-01-01"}},
     "schedule.date: 0001-01-01 is out of range"),
    ("since-year-1", "GET", "/api/v1/messages?since=0001-01-01T00:00:00%2B14:00", None,
     "since: 0001-01-01T00:00:00+14:00 is out of range"),
    ("export-since-year-1", "GET", "/api/v1/consent/export?since=0001-01-01T00:00:00%2B14:00",
     None, "since: 0001-01-01T00:00:00+14:00 is out of range"),
]


@pytest.mark.parametrize(("method", "path", "body", "words"), [t[1:] for t in TIMES],
                         ids=[t[0] for t in TIMES])
async def test_times_out_of_range_are_400s_that_name_the_field(
        client: Any, method: str, path: str, body: Any, words: str) -> None:
    before = await row_counts(client)
    response = await client.request(method, path, json=body, headers=admin())
    assert response.status == 400, await response.text()
    assert words in (await response.json())["error"]["message"]
    assert await row_counts(client) == before


@pytest.mark.parametrize(("field", "value", "words"), [
    ("source", ["web_form"], "source: use one of"),
    ("source", {"a": 1}, "source: use one of"),
    ("double_opt_in", ["yes"], "double_opt_in: expected true or false"),
    ("double_opt_in", "yes", "double_opt_in: expected true or false"),
])
async def test_a_consent_field_of_the_wrong_type_is_a_400(client: Any, field: str,
                                                          value: Any, words: str) -> None:
    before = await row_counts(client)
    body = {"phone": "+12125550101", "program": "deals", "action": "opt_in",
            "source": "web_form", "evidence": {"form_url": "https://acme.example/join"},
            field: value}
    response = await client.post("/api/v1/consent", json=body, headers=admin())
    assert response.status == 400, await response.text()
    assert words in (await response.json())["error"]["message"]
    assert await row_counts(client) == before


async def raw_request(client: Any, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """A request written byte by byte (a client library would refuse these headers)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head + b"\r\nHost: x\r\nConnection: close\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1]), answer


@pytest.mark.parametrize(("head", "code"), [
    (b"GET /api/v1/programs HTTP/1.1\r\nAuthorization: Bearer \xe9\xe9\xff", 401),
    (b"GET /api/v1/programs HTTP/1.1\r\nAuthorization: \xff\xfe token", 401),
    (b"POST /webhooks/twilio/sms HTTP/1.1\r\nOrigin: https://\xff\xfe.example\r\n"
     b"Content-Type: application/x-www-form-urlencoded", 403),
    (b"POST /webhooks/twilio/sms HTTP/1.1\r\nSec-Fetch-Site: \xff\r\n"
     b"Content-Type: application/x-www-form-urlencoded", 403),
    (b"POST /webhooks/twilio/sms HTTP/1.1\r\nX-Twilio-Signature: \xff\xfe\r\n"
     b"Content-Type: application/x-www-form-urlencoded", 403),
])
async def test_header_bytes_that_are_not_utf8_are_refused_before_anyone_is_trusted(
        client: Any, head: bytes, code: int, caplog: pytest.LogCaptureFixture) -> None:
    before = await row_counts(client)
    status, answer = await raw_request(client, head, b"MessageSid=SM1&From=%2B12125550101"
                                                     b"&To=12345&Body=STOP")
    assert status == code, answer
    assert b'"error"' in answer
    assert await row_counts(client) == before
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_schedule_body_that_is_not_utf8_is_a_400(client: Any) -> None:
    created = await client.post("/api/v1/campaigns", headers=admin(), json={
        "name": "x", "program": "deals", "template": "Deals: hi. Reply STOP to end"})
    campaign = (await created.json())["id"]
    before = await row_counts(client)
    response = await client.post(f"/api/v1/campaigns/{campaign}/schedule",
                                 data=b"\xdd(\xa0y", headers={
                                     **admin(), "Content-Type": "application/json"})
    assert response.status == 400
    assert "not UTF-8" in (await response.json())["error"]["message"]
    assert await row_counts(client) == before


async def test_a_request_aiohttp_cannot_parse_is_one_log_line(
        client: Any, caplog: pytest.LogCaptureFixture) -> None:
    server_log = logging.getLogger("aiohttp.server")
    server_log.addFilter(logs._one_line_for_bad_requests)  # as setup_logging installs it
    try:
        status, _ = await raw_request(client, b"GET /healthz HTTP/1.1\r\nX-Probe: \x00")
    finally:
        server_log.removeFilter(logs._one_line_for_bad_requests)
    assert status == 400
    [record] = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert record.levelname == "WARNING" and record.exc_info is None
    assert "refused a malformed request" in record.getMessage()


@pytest.mark.parametrize(("body", "words"), [
    ({"endpont": "crm"}, "endpont: unknown field"),
    ({"endpoint": None}, "endpoint: None is not a configured sync endpoint"),
    ({"endpoint": ["crm"]}, "is not a configured sync endpoint"),
    ({"ids": [True]}, "ids: expected an array of dead-letter ids"),
    ({"ids": [2**64]}, "ids: expected an array of dead-letter ids"),
    ({"ids": [0]}, "ids: expected an array of dead-letter ids"),
])
async def test_a_replay_request_that_could_mean_everything_by_mistake_is_a_400(
        client: Any, body: dict[str, Any], words: str) -> None:
    before = await row_counts(client)
    response = await client.post("/api/v1/sync/dead-letters/replay", json=body,
                                 headers=admin())
    assert response.status == 400, await response.text()
    assert words in (await response.json())["error"]["message"]
    assert await row_counts(client) == before
