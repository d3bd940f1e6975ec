"""Keywords and conversations through the real inbound webhook (sandbox: unsigned)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest

from gateway import keys
from gateway.clock import FrozenClock
from gateway.config import Config, StepConfig
from gateway.errors import ConfigError
from handlers.conversations import parse_answer
from handlers.router import Context, Router
from tests.conftest import CarrierClient, ConfigFactory, admin, eventually, sample

PHONE = "+12125550101"
_sids = itertools.count(1)

PROGRAMS = [
    {"id": "deals", "name": "Acme Deals", "short_code": "12345", "keywords": ["JOIN"],
     "help_text": "Acme Deals help: help@acme.example", "frequency": "4 msgs/wk"}]
KEYWORDS = [
    {"words": ["HOURS", "ساعت"], "program": "deals",
     "reply": "Hi {first_name|there}, we are open 9-5."},
    {"words": ["ZIP"], "program": "deals", "attribute": "zip", "tags": ["local"],
     "reply": "Thanks, we noted {zip}."},
    {"words": ["FEEDBACK"], "program": "deals", "conversation": "survey"},
]
SURVEY = {
    "id": "survey", "program": "deals", "expiry_hours": 24,
    "final": "Thank you {first_name|friend}!",
    "steps": [
        {"id": "liked", "prompt": "Did you enjoy your visit? (YES/NO)", "type": "yes_no",
         "attribute": "enjoyed", "branches": [{"answer": "no", "next": "why"}],
         "next": "score"},
        {"id": "why", "prompt": "Sorry! What went wrong?", "type": "text",
         "attribute": "complaint", "next": "end"},
        {"id": "score", "prompt": "Rate us from 1 to 10", "type": "number", "range": [1, 10],
         "attribute": "score", "max_retries": 1},
        {"id": "dish", "prompt": "Favourite dish? 1 Pizza 2 Pasta", "type": "choice",
         "choices": ["Pizza", "Pasta"], "attribute": "dish"},
        {"id": "birthday", "prompt": "Your birthday (YYYY-MM-DD)?", "type": "date",
         "attribute": "birthday"},
    ]}


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config(programs=PROGRAMS, keywords=KEYWORDS, conversations=[SURVEY],
                       inbound={"fallback_reply": "Sorry, we did not understand. Text HELP."})


async def text(client: Any, body: str, sid: str | None = None, phone: str = PHONE
               ) -> list[str]:
    response = await client.post("/webhooks/twilio/sms", data={
        "MessageSid": sid or f"SM{next(_sids):032d}", "From": phone, "To": "12345",
        "Body": body})
    assert response.status == 200
    return [unescape(m) for m in re.findall(r"<Message[^>]*>(.*?)</Message>",
                                            await response.text())]


async def attributes(client: Any) -> dict[str, Any]:
    profile = await client.app[keys.PROFILES].load(client.app[keys.DB], PHONE)  # type: ignore
    return dict(profile.attributes) if profile else {}


@pytest.mark.parametrize(("body", "expected"), [
    ("HOURS", "Hi there, we are open 9-5."),
    ("  hours!! ", "Hi there, we are open 9-5."),
    ("Ｈｏｕｒｓ", "Hi there, we are open 9-5."),  # full-width, NFKC
    ("ساعت", "Hi there, we are open 9-5."),  # the Persian alias
    ("hours please", "Hi there, we are open 9-5."),  # arguments after the keyword
    ("what are your hours", "Sorry, we did not understand. Text HELP."),  # not first
    ("HELP", "Acme Deals help: help@acme.example"),  # reserved wins
    ("banana", "Sorry, we did not understand. Text HELP."),
])
async def test_router_table(client: Any, body: str, expected: str) -> None:
    assert await text(client, body) == [expected]


async def test_a_keyword_sets_an_attribute_and_tags_and_uses_the_profile(client: Any) -> None:
    assert await text(client, "zip 10001") == ["Thanks, we noted 10001."]
    profile = await client.app[keys.PROFILES].load(client.app[keys.DB], PHONE)  # type: ignore
    assert profile is not None
    assert profile.attributes["zip"] == "10001" and "local" in profile.tags
    await client.patch(f"/api/v1/profiles/{PHONE}", json={"first_name": "Ana"},
                       headers={"Authorization": "Bearer test-admin-token-0123456789"})
    assert await text(client, "HOURS") == ["Hi Ana, we are open 9-5."]


async def test_a_survey_with_every_answer_type_and_re_prompts(client: Any) -> None:
    assert await text(client, "FEEDBACK") == ["Did you enjoy your visit? (YES/NO)"]
    assert await text(client, "maybe") == [
        "Sorry, I did not get that. Did you enjoy your visit? (YES/NO) Reply YES or NO"]
    assert await text(client, "Yes!") == ["Rate us from 1 to 10"]
    assert await text(client, "11") == [
        "Sorry, I did not get that. Rate us from 1 to 10 Reply a number from 1 to 10"]
    assert await text(client, "۸") == ["Favourite dish? 1 Pizza 2 Pasta"]  # Persian 8
    assert await text(client, "2") == ["Your birthday (YYYY-MM-DD)?"]
    assert await text(client, "1990-04-01") == ["Thank you friend!"]
    assert await attributes(client) == {"enjoyed": "yes", "score": 8, "dish": "Pasta",
                                        "birthday": "1990-04-01"}
    assert await text(client, "banana") == ["Sorry, we did not understand. Text HELP."]
    timeline = await client.get(f"/api/v1/profiles/{PHONE}/timeline?limit=500",
                                headers={"Authorization": "Bearer test-admin-token-0123456789"})
    types = [e["type"] for e in (await timeline.json())["events"]]
    assert types.count("conversation.answer") == 4
    assert "conversation.started" in types and "conversation.finished" in types


async def test_a_branch_and_too_many_wrong_answers(client: Any) -> None:
    await text(client, "FEEDBACK")
    assert await text(client, "no") == ["Sorry! What went wrong?"]
    assert await text(client, "Cold soup") == ["Thank you friend!"]
    assert (await attributes(client))["complaint"] == "Cold soup"
    await text(client, "FEEDBACK")
    await text(client, "yes")
    assert await text(client, "lots") != []  # one retry allowed
    assert await text(client, "heaps") == []  # then the conversation ends quietly
    assert await text(client, "9") == ["Sorry, we did not understand. Text HELP."]


async def test_reserved_keywords_win_mid_conversation_and_stop_ends_it(client: Any) -> None:
    await text(client, "FEEDBACK")
    assert await text(client, "HELP") == ["Acme Deals help: help@acme.example"]
    assert await text(client, "yes") == ["Rate us from 1 to 10"]  # still in the survey
    stop = await text(client, "STOP")
    assert len(stop) == 1 and "unsubscribed" in stop[0]
    assert await text(client, "7") == ["Sorry, we did not understand. Text HELP."]


async def test_start_mid_survey_is_a_re_subscription_not_an_answer(client: Any) -> None:
    await text(client, "STOP")
    await text(client, "FEEDBACK")
    answer = await text(client, "START")
    assert answer and "Rate us" not in answer[0] and "Did you enjoy" not in answer[0]


async def test_a_retried_webhook_gets_the_same_answer_and_moves_nothing(client: Any) -> None:
    await text(client, "FEEDBACK")
    first = await text(client, "yes", sid="SM" + "7" * 32)
    again = await text(client, "yes", sid="SM" + "7" * 32)
    assert first == again == ["Rate us from 1 to 10"]
    assert await text(client, "5") == ["Favourite dish? 1 Pizza 2 Pasta"]


async def test_an_unanswered_conversation_expires_quietly(make_config: ConfigFactory,
                                                          make_client: Any) -> None:
    clock = FrozenClock(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
    client = await make_client(make_config(programs=PROGRAMS, keywords=KEYWORDS,
                                           conversations=[SURVEY]), clock=clock)
    await text(client, "FEEDBACK")
    clock.advance(timedelta(hours=24, seconds=1))
    assert await text(client, "yes") == []  # no fallback set: silence, not "Rate us"
    row = await client.app[keys.DB].fetchone("SELECT COUNT(*) FROM conversations")
    assert row is not None and row[0] == 0


async def test_a_conversation_survives_a_restart(make_config: ConfigFactory,
                                                 make_client: Any) -> None:
    config = make_config(programs=PROGRAMS, keywords=KEYWORDS, conversations=[SURVEY])
    first = await make_client(config)
    await text(first, "FEEDBACK")
    await text(first, "yes")
    await first.close()
    second = await make_client(config)
    assert await text(second, "6") == ["Favourite dish? 1 Pizza 2 Pasta"]


async def test_automatic_replies_are_capped_per_number(make_config: ConfigFactory,
                                                       make_client: Any) -> None:
    client = await make_client(make_config(
        programs=PROGRAMS, keywords=KEYWORDS, conversations=[SURVEY],
        inbound={"max_auto_replies": 3}))
    answers = [await text(client, "HOURS") for _ in range(5)]
    assert [len(a) for a in answers] == [1, 1, 1, 0, 0]
    assert len(await text(client, "STOP")) == 1  # the opt-out confirmation always goes
    rows = await client.app[keys.DB].fetchone("SELECT COUNT(*) FROM inbound_messages")
    assert rows is not None and rows[0] == 6  # every message stored all the same
    metrics = await (await client.get("/metrics")).text()
    assert sample(metrics, "mcrm_inbound_silenced_total") == 2
    assert len(await text(client, "HOURS", phone="+12125550199")) == 1  # others unaffected


async def test_python_handlers_with_the_decorator(make_config: ConfigFactory,
                                                  make_client: Any) -> None:
    router = Router()

    @router.keyword("BALANCE", "BAL")
    async def balance(ctx: Context) -> str:
        return f"Balance for {ctx.phone[-4:]}: $12 ({' '.join(ctx.args) or 'all'})"

    @router.fallback()
    async def unknown(ctx: Context) -> None:
        return None

    from aiohttp.test_utils import TestServer

    from gateway.app import create_app

    client = CarrierClient(TestServer(create_app(make_config(programs=PROGRAMS), router=router),
                                   host="127.0.0.1"))
    await client.start_server()
    try:
        assert await text(client, "bal savings") == ["Balance for 0101: $12 (savings)"]
        assert await text(client, "whatever") == []
    finally:
        await client.close()


@pytest.mark.parametrize(("step", "said", "expected"), [
    ({"type": "yes_no"}, "Yep", (True, "yes")),
    ({"type": "yes_no"}, "نه", (True, "no")),
    ({"type": "yes_no"}, "perhaps", (False, None)),
    ({"type": "choice", "choices": ["Red", "Blue"]}, "blue", (True, "Blue")),
    ({"type": "choice", "choices": ["Red", "Blue"]}, "3", (False, None)),
    ({"type": "number", "range": [0, 5]}, "4.5", (True, 4.5)),
    ({"type": "number", "range": [0, 5]}, "-1", (False, None)),
    ({"type": "number"}, "12 apples", (False, None)),
    ({"type": "date"}, "12/31/2026", (True, "2026-12-31")),
    ({"type": "date"}, "31.12.2026", (True, "2026-12-31")),
    ({"type": "date"}, "tomorrow", (False, None)),
    ({"type": "text"}, "  Anything at all ", (True, "Anything at all")),
    ({"type": "text"}, "  ", (False, None)),
])
def test_answer_types(step: dict[str, Any], said: str, expected: tuple[bool, Any]) -> None:
    config = StepConfig(id="s", prompt="?", **{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in step.items()})
    assert parse_answer(config, said) == expected


@pytest.mark.parametrize(("change", "key", "message"), [
    ({"keywords": [{"words": ["JOIN"], "program": "deals", "reply": "x"}]},
     "keywords[0].words[0]", "already used"),
    ({"keywords": [{"words": ["X"], "program": "nope", "reply": "x"}]},
     "keywords[0].program", "not a configured program"),
    ({"keywords": [{"words": ["X"], "program": "deals"}]}, "keywords[0]", "does nothing"),
    ({"keywords": [{"words": ["X"], "program": "deals", "conversation": "nope"}]},
     "keywords[0].conversation", "not a configured conversation"),
    ({"conversations": [{**SURVEY, "steps": [{"id": "a", "prompt": "?", "next": "zz"}]}]},
     "conversations[0].steps[0].next", "not a step"),
    ({"conversations": [{**SURVEY, "steps": [{"id": "a", "prompt": "?", "type": "choice"}]}]},
     "conversations[0].steps[0].choices", "needs its choices"),
])
def test_configuration_mistakes_are_named(make_config: ConfigFactory, change: dict[str, Any],
                                          key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(programs=PROGRAMS, **change)
    assert key in str(caught.value) and message in str(caught.value)


async def test_two_texts_at_once_are_handled_one_after_the_other(client: Any) -> None:
    """No lost update: each answer sees the state the other left, in some order."""
    await text(client, "FEEDBACK")
    first, second = await asyncio.gather(text(client, "yes"), text(client, "7"))
    in_order = (["Rate us from 1 to 10"], ["Favourite dish? 1 Pizza 2 Pasta"])
    # "7" first is a wrong yes/no answer (a re-prompt), then "yes" moves on.
    reprompt = ["Sorry, I did not get that. Did you enjoy your visit? (YES/NO) Reply YES or NO"]
    reversed_ = (["Rate us from 1 to 10"], reprompt)
    assert (first, second) in (in_order, reversed_)
    step = await client.app[keys.DB].fetchone("SELECT step FROM conversations")
    assert step is not None and step[0] == ("dish" if (first, second) == in_order else "score")


async def test_a_handler_reply_that_leaves_later_goes_through_the_outbound_pipeline(
        make_config: ConfigFactory, make_client: Any) -> None:
    router = Router()

    @router.keyword("REMIND")
    async def remind(ctx: Context) -> str:
        await ctx.reply_later("Reminder: your table is at 8pm.", timedelta(seconds=0.5))
        return "OK, we will remind you."

    from gateway.app import create_app

    app = create_app(make_config(programs=PROGRAMS), router=router)
    from aiohttp.test_utils import TestServer

    client = CarrierClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        sent = time.monotonic()
        assert await text(client, "remind me", sid="SM" + "7" * 32) == [
            "OK, we will remind you."]
        assert await text(client, "remind me", sid="SM" + "7" * 32) == [
            "OK, we will remind you."]  # a provider retry: answered again, queued once

        async def sandbox() -> list[dict[str, Any]]:
            response = await client.get(f"/api/v1/sandbox/messages?to=%2B{PHONE[1:]}",
                                        headers=admin())
            return list((await response.json())["messages"])

        assert await sandbox() == []
        await eventually(lambda: _has(sandbox, "Reminder: your table is at 8pm."),
                         what="the later reply sent")
        assert time.monotonic() - sent >= 0.5
        rows = await client.app[keys.DB].fetchall(
            "SELECT purpose, status FROM outbound_messages WHERE body LIKE 'Reminder%'")
        assert [r["purpose"] for r in rows] == ["reply"]
        assert rows[0]["status"] in ("sent", "delivered")
    finally:
        await client.close()


async def _has(fetch: Any, body: str) -> bool:
    return any(m["body"] == body for m in await fetch())
