"""Erasure: nothing personal stays in the database file; the number stays suppressed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from consent import Purpose
from gateway import keys
from gateway.config import Config
from gateway.db.profiles import is_suppressed
from gateway.models import OutgoingSMS
from tests.conftest import admin, free_port
from tests.fakes.crm_receiver import CrmReceiver

NAME = "Zebulon Quixote-Farnsworth"
SECRET_TEXT = "deliver the pizza to the blue door 4421"
PHONE = "+12125550177"


def database_bytes(config: Config) -> bytes:
    path = config.database_path()
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
                    if p.exists())


async def leave_traces(client: Any) -> None:
    """A customer who texted, was named, tagged, answered and got an answer."""
    for n in range(3):
        response = await client.post("/webhooks/twilio/sms", data={
            "MessageSid": f"SM{n}", "From": PHONE, "To": "12345", "Body": f"{SECRET_TEXT} {n}"})
        assert response.status == 200
    response = await client.patch(f"/api/v1/profiles/{PHONE}", headers=admin(), json={
        "first_name": NAME, "email": "zq@example.com", "attributes": {"note": SECRET_TEXT},
        "add_tags": ["pizza-lover"]})
    assert response.status == 200
    result = await client.app[keys.PROVIDER].send(OutgoingSMS(
        to_number=PHONE, from_number="12345", body=f"Hi {NAME}, about {SECRET_TEXT}"))
    await client.post("/webhooks/twilio/status", data={
        "MessageSid": result.provider_sid, "MessageStatus": "delivered", "To": PHONE,
        "From": "12345", "Body": SECRET_TEXT})


async def test_erasure_leaves_nothing_personal_in_the_file(client: Any, config: Config
                                                           ) -> None:
    await leave_traces(client)
    # Someone else's data must survive the erasure untouched.
    await client.patch("/api/v1/profiles/+12125550188", headers=admin(),
                       json={"first_name": "Unrelated Person"})
    assert NAME.encode() in database_bytes(config)
    assert SECRET_TEXT.encode() in database_bytes(config)

    response = await client.delete(f"/api/v1/profiles/{PHONE}", headers=admin())
    assert response.status == 200
    body = await response.json()
    assert body["erased"] is True

    raw = database_bytes(config)
    for secret in (NAME, SECRET_TEXT, "zq@example.com", "pizza-lover"):
        assert secret.encode() not in raw, f"{secret!r} is still in the database file"
    assert b"Unrelated Person" in raw

    db = client.app[keys.DB]
    assert await is_suppressed(db, PHONE)
    profile = await (await client.get(f"/api/v1/profiles/{PHONE}", headers=admin())).json()
    assert (profile["first_name"], profile["email"], profile["attributes"], profile["tags"]) \
        == (None, None, {}, [])
    assert profile["counters"]["inbound"] == 3  # counts are not personal
    timeline = await (await client.get(f"/api/v1/profiles/{PHONE}/timeline",
                                       headers=admin())).json()
    assert timeline["events"][-1]["type"] == "profile.erased"
    assert all(e["data"] == {"redacted": True} for e in timeline["events"][:-1])


SURVEY = {
    "keywords": [{"words": ["SURVEY"], "program": "deals", "conversation": "visit"}],
    "conversations": [{"id": "visit", "program": "deals", "steps": [
        {"id": "what", "prompt": "What did you buy?", "type": "text"},
        {"id": "where", "prompt": "Which shop?", "type": "text"}]}],
}


async def test_erasure_ends_a_conversation_and_leaves_none_of_its_answers(
        make_config: Any, make_client: Any) -> None:
    config = make_config(**SURVEY)
    client = await make_client(config)
    for sid, body in (("SM1", "SURVEY"), ("SM2", SECRET_TEXT)):
        response = await client.post("/webhooks/twilio/sms", data={
            "MessageSid": sid, "From": PHONE, "To": "12345", "Body": body})
        assert response.status == 200
    db = client.app[keys.DB]
    [row] = await db.fetchall("SELECT answers_json FROM conversations WHERE phone = ?",
                              (PHONE,))
    assert SECRET_TEXT in row[0]  # the first answer waits for the second step
    response = await client.delete(f"/api/v1/profiles/{PHONE}", headers=admin())
    assert response.status == 200
    assert await db.fetchall("SELECT 1 FROM conversations WHERE phone = ?", (PHONE,)) == []
    assert SECRET_TEXT.encode() not in database_bytes(config)


def test_cli_erase(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[database]\npath = "db.sqlite3"\n', encoding="utf-8")
    source = tmp_path / "people.csv"
    source.write_text(f"phone,first_name\n{PHONE},{NAME}\n", encoding="utf-8")
    run = [sys.executable, "-m", "gateway", "profiles"]
    imported = subprocess.run([*run, "import", str(source), "-c", str(config)],
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    erased = subprocess.run([*run, "erase", "(212) 555-0177", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"erased {PHONE}")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("db.sqlite3*"))
    assert NAME.encode() not in raw
    bad = subprocess.run([*run, "erase", "nope", "-c", str(config)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "cannot parse phone number" in bad.stderr


async def test_an_erased_customer_is_refused_even_after_an_old_opt_in(client: Any) -> None:
    """What a campaign asks before each message: the erased number gets nothing."""

    consent = client.app[keys.CONSENT]
    db = client.app[keys.DB]
    await client.post("/api/v1/consent", headers=admin(), json={
        "phone": PHONE, "program": "deals", "action": "opt_in",
        "evidence": {"form_url": "https://acme.example/join"}})
    now = client.app[keys.CLOCK].now()
    assert (await consent.rules.decide(db, PHONE, "deals", Purpose.MARKETING, now)).verdict \
        in ("allow", "defer")  # opted in (quiet hours may defer it)
    assert (await client.delete(f"/api/v1/profiles/{PHONE}", headers=admin())).status == 200
    later = client.app[keys.CLOCK].now()
    for purpose in Purpose:
        decision = await consent.rules.decide(db, PHONE, "deals", purpose, later)
        assert (decision.verdict, decision.reason) == ("deny", "opted_out"), purpose
    profile = await (await client.get(f"/api/v1/profiles/{PHONE}", headers=admin())).json()
    assert profile["consent"] == {"deals": "opted_in"}  # the ledger is kept …
    assert profile["suppressed_since"] is not None  # … and the suppression wins


async def test_the_erasure_reaches_the_crm_without_personal_data(
        make_config: Any, make_client: Any) -> None:
    receiver = CrmReceiver("crm-shared-secret-0123456789", free_port())
    await receiver.start()
    try:
        client = await make_client(make_config(sync={
            "endpoints": [{"name": "crm", "url": receiver.url,
                           "secret": "crm-shared-secret-0123456789"}],
            "poll_interval_seconds": 0.05, "retry_initial_seconds": 0.05}))
        await leave_traces(client)
        assert (await client.delete(f"/api/v1/profiles/{PHONE}", headers=admin())).status == 200
        for _ in range(200):
            if any(e["type"] == "profile.erased" for e in receiver.events):
                break
            await asyncio.sleep(0.02)
        erased = [e for e in receiver.events if e["type"] == "profile.erased"]
        assert len(erased) == 1
        assert erased[0]["phone"] == PHONE
        assert erased[0]["profile"]["first_name"] is None
        assert NAME not in json.dumps(erased[0])
    finally:
        await receiver.stop()
