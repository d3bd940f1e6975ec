"""The ledger and the reserved keywords: STOP, START, YES, HELP and joining, against a real
database file."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consent.keywords import Intent
from consent.ledger import ConsentEvent, ConsentLedger, Kind, Source, Status
from consent.programs import Catalog
from consent.responder import ConsentResponder
from consent.rules import ConsentRules, Purpose, Verdict
from gateway.config import Config, parse_config
from gateway.db import Database
from gateway.models import InboundMessage
from gateway.profiles import ProfileStore

PHONE = "+12125550101"
T0 = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)

PROGRAMS = [
    {"id": "deals", "name": "Acme Deals", "short_code": "12345", "keywords": ["JOIN", "DEALS"],
     "help_text": "Acme Deals: 4 msgs/wk. Help: help@acme.example. STOP to end.",
     "frequency": "Up to 4 msgs/week", "terms_url": "https://acme.example/sms",
     "translations": [{"language": "fa", "help_text": "راهنما: ۱۱ برای لغو"}]},
    {"id": "alerts", "name": "Acme Alerts", "short_code": "12345", "keywords": ["ALERTS"],
     "kind": "transactional", "help_text": "Acme Alerts: order updates. STOP to end."},
    {"id": "news", "name": "Acme News", "short_code": "67890", "keywords": ["NEWS"],
     "help_text": "Acme News: weekly. STOP to end."},
]


def make_config(**consent: Any) -> Config:
    return parse_config({
        "short_codes": [{"code": "12345"}, {"code": "67890"}], "programs": PROGRAMS,
        "consent": consent}, environ={})


class World:
    """A ledger, a responder and a clock over one database."""

    def __init__(self, db: Database, config: Config) -> None:
        self.db = db
        self.catalog = Catalog(config)
        self.ledger = ConsentLedger(ProfileStore(), pending_for=self.catalog.pending_for)
        self.responder = ConsentResponder(self.ledger, self.catalog)
        self.now = T0
        self.sid = 0

    async def text(self, body: str, to: str = "12345", phone: str = PHONE) -> Any:
        self.sid += 1
        self.now += timedelta(minutes=1)
        msg = InboundMessage("twilio", f"SM{self.sid}", phone, to, body, self.now)
        return await self.db.write(lambda tx: self.responder.handle(tx, msg))

    async def status(self, program: str, phone: str = PHONE) -> Status:
        return (await self.ledger.state(self.db, phone, program)).effective(self.now)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "mcrm.sqlite3")
    yield database
    await database.close()


@pytest.fixture
def world(db: Database) -> World:
    return World(db, make_config())


async def test_join_asks_for_confirmation_and_only_yes_confirms(world: World) -> None:
    outcome = await world.text("JOIN")
    assert outcome.intent is Intent.OPT_IN
    [reply] = outcome.replies
    for required in ("Acme Deals", "Up to 4 msgs/week", "Msg & data rates may apply",
                     "HELP", "STOP", "https://acme.example/sms", "reply Y"):
        assert required in reply.text
    assert await world.status("deals") is Status.PENDING
    assert await world.text("sure thing") is None  # not a confirmation
    assert await world.status("deals") is Status.PENDING
    outcome = await world.text("y")
    assert outcome.intent is Intent.CONFIRM
    assert "you are subscribed" in outcome.replies[0].text
    assert await world.status("deals") is Status.OPTED_IN


async def test_an_unconfirmed_request_expires(world: World) -> None:
    await world.text("JOIN")
    world.now += timedelta(hours=24)
    assert await world.status("deals") is Status.NONE
    assert await world.text("YES") is None  # nothing to confirm: free for a conversation
    assert await world.status("deals") is Status.NONE


async def test_transactional_programs_join_at_once(world: World) -> None:
    outcome = await world.text("alerts")
    assert await world.status("alerts") is Status.OPTED_IN
    assert "Acme Alerts: you are subscribed" in outcome.replies[0].text


async def test_stop_ends_every_program_on_the_short_code_with_one_reply(world: World) -> None:
    await world.text("JOIN")
    await world.text("Y")
    await world.text("ALERTS")
    await world.text("NEWS", to="67890")
    await world.text("Y", to="67890")
    outcome = await world.text("Stop texting me")
    assert outcome.intent is Intent.OPT_OUT
    [reply] = outcome.replies
    assert reply.text == ("Acme Deals, Acme Alerts: you are unsubscribed and will get no more "
                          "messages. Reply START to rejoin.")
    assert "deal" not in reply.text.lower().replace("acme deals", "")  # no marketing
    assert await world.status("deals") is Status.OPTED_OUT
    assert await world.status("alerts") is Status.OPTED_OUT
    assert await world.status("news") is Status.OPTED_IN  # another short code


async def test_brand_scope_ends_everything(db: Database) -> None:
    world = World(db, make_config(stop_scope="brand"))
    await world.text("NEWS", to="67890")
    await world.text("Y", to="67890")
    await world.text("STOP")
    assert await world.status("news") is Status.OPTED_OUT


async def test_stop_with_a_keyword_ends_only_that_program(world: World) -> None:
    await world.text("JOIN")
    await world.text("Y")
    await world.text("ALERTS")
    outcome = await world.text("STOP DEALS")
    assert outcome.replies[0].text.startswith("Acme Deals: you are unsubscribed")
    assert await world.status("deals") is Status.OPTED_OUT
    assert await world.status("alerts") is Status.OPTED_IN


async def test_stop_from_a_stranger_is_answered_once_and_recorded(world: World) -> None:
    outcome = await world.text("STOP")
    assert len(outcome.replies) == 1
    assert await world.status("deals") is Status.OPTED_OUT
    again = await world.text("STOP")
    assert len(again.replies) == 1 and again.consent_event_ids == []  # nothing new to record


async def test_start_restores_only_what_stop_ended(world: World) -> None:
    await world.text("JOIN")
    await world.text("Y")
    await world.text("STOP")  # ends deals (opted in) and alerts (never joined)
    outcome = await world.text("START")
    assert [r.program_id for r in outcome.replies] == ["deals"]
    assert await world.status("deals") is Status.OPTED_IN
    assert await world.status("alerts") is Status.OPTED_OUT  # START does not join anything


async def test_yes_after_stop_resubscribes(world: World) -> None:
    await world.text("ALERTS")
    await world.text("STOP")
    outcome = await world.text("YES")
    assert outcome.intent is Intent.CONFIRM
    assert await world.status("alerts") is Status.OPTED_IN


async def test_help_is_answered_to_anyone_in_their_language(world: World) -> None:
    outcome = await world.text("HELP")
    assert outcome.replies[0].text.startswith("Acme Deals: 4 msgs/wk")
    await world.db.write(lambda tx: tx.execute(
        "INSERT INTO profiles (phone, language, created_at, updated_at) VALUES (?, 'fa', 'x',"
        " 'x') ON CONFLICT (phone) DO UPDATE SET language = 'fa'", (PHONE,)))
    outcome = await world.text("help")
    assert outcome.replies[0].text == "راهنما: ۱۱ برای لغو"


async def test_doubtful_messages_go_to_the_review_list(world: World) -> None:
    assert await world.text("stop by the store tomorrow?") is None
    rows = await world.db.fetchall("SELECT phone, text, rule FROM consent_review")
    assert [tuple(r) for r in rows] == [(PHONE, "stop by the store tomorrow?",
                                         "contains a stop word")]


async def test_configured_families(db: Database) -> None:
    world = World(db, make_config(opt_out_keywords=["11", "لغو"], opt_in_keywords=["12"]))
    await world.text("ALERTS")
    await world.text("۱۱")
    assert await world.status("alerts") is Status.OPTED_OUT
    await world.text("12")
    assert await world.status("alerts") is Status.OPTED_IN


async def test_every_event_keeps_its_evidence_and_lands_on_the_timeline(world: World) -> None:
    await world.text("JOIN")
    [event] = await world.ledger.history(world.db, PHONE)
    assert (event.kind, event.source, event.inbound_sid, event.inbound_text) == (
        Kind.OPT_IN_REQUESTED, "keyword", "SM1", "JOIN")
    assert event.reply_text and "reply Y" in event.reply_text
    assert event.evidence == {"short_code": "12345"}
    timeline = await world.db.fetchall("SELECT type, data_json FROM profile_events")
    assert [r[0] for r in timeline] == ["consent.changed"]


async def test_the_ledger_is_append_only(world: World, db: Database, tmp_path: Path) -> None:
    await world.text("STOP")
    with sqlite3.connect(tmp_path / "mcrm.sqlite3") as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM consent_events")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE consent_events SET kind = 'imported'")


async def test_rebuilding_from_the_events_gives_the_materialised_status(world: World) -> None:
    rng = random.Random(4)
    phones = [f"+1212555{n:04d}" for n in range(6)]
    words = ["JOIN", "Y", "ALERTS", "STOP", "START", "STOP DEALS", "YES", "HELP", "NEWS"]
    for _ in range(150):
        phone = rng.choice(phones)
        to = "67890" if rng.random() < 0.2 else "12345"
        await world.text(rng.choice(words), to=to, phone=phone)
    for source in (Source.API, Source.IMPORT):
        await world.db.write(lambda tx, source=source: world.ledger.record(tx, ConsentEvent(
            phones[0], "news", Kind.IMPORTED, source, world.now, evidence={"form": "x"})))
    before = await world.db.fetchall("SELECT * FROM consent_status ORDER BY 1, 2")
    assert len(before) > 6
    differing = await world.db.write(world.ledger.rebuild)
    assert differing == 0
    after = await world.db.fetchall("SELECT * FROM consent_status ORDER BY 1, 2")
    assert [tuple(r) for r in after] == [tuple(r) for r in before]


async def test_decide_reads_zones_from_the_profile_or_the_number(world: World) -> None:
    """Australian mobiles may be anywhere from the Cocos Islands (UTC+6:30) to Lord Howe
    (UTC+10:30): the window must be open in all of them."""

    aussie = "+61412345678"
    await world.db.write(lambda tx: world.ledger.record(tx, ConsentEvent(
        aussie, "deals", Kind.OPT_IN_CONFIRMED, Source.WEB_FORM, T0, evidence={"f": "x"})))
    rules = ConsentRules(world.ledger, world.catalog.policies())
    # 22:30 UTC on 10 June: 08:30 in Sydney, but 06:30 in Perth and 05:00 on Cocos.
    at = datetime(2026, 6, 10, 22, 30, tzinfo=UTC)
    decision = await rules.decide(world.db, aussie, "deals", Purpose.MARKETING, at)
    assert (decision.verdict, decision.reason) == (Verdict.DEFER, "quiet_hours")
    # Cocos opens last, at 08:00 local = 01:30 UTC; by then every other zone is open too.
    assert decision.not_before == datetime(2026, 6, 11, 1, 30, tzinfo=UTC)
    # Once the customer says they live in Sydney, only Sydney's window counts.
    await world.db.write(lambda tx: tx.execute(
        "UPDATE profiles SET time_zone = 'Australia/Sydney' WHERE phone = ?", (aussie,)))
    decision = await rules.decide(world.db, aussie, "deals", Purpose.MARKETING, at)
    assert decision.verdict is Verdict.ALLOW and decision.opt_in_event_id is not None
    with pytest.raises(KeyError):
        await rules.decide(world.db, aussie, "nope", Purpose.MARKETING, at)
