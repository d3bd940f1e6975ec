"""The opt-out rule, tried on real-looking messages (see consent/keywords.py for the rule)."""

from __future__ import annotations

import pytest

from consent.keywords import Families, Intent, classify
from gateway.text import normalise

OUT, IN, YES, HELP, REVIEW, NONE = (Intent.OPT_OUT, Intent.OPT_IN, Intent.CONFIRM,
                                    Intent.HELP, Intent.REVIEW, Intent.NONE)

TABLE = [
    # Every carrier/Twilio/FCC spelling, any case, with stray spaces and punctuation.
    ("STOP", OUT), ("stop", OUT), (" Stop. ", OUT), ("STOP!!!", OUT), ("ＳＴＯＰ", OUT),
    ("STOPALL", OUT), ("stop all", OUT), ("Stop  All", OUT), ("UNSUBSCRIBE", OUT),
    ("cancel", OUT), ("END", OUT), ("quit", OUT), ("Revoke", OUT), ("OPTOUT", OUT),
    ("opt out", OUT), ("Opt-Out", OUT), ("REMOVE", OUT), ("s\u200btop", OUT),
    # Revocation by any reasonable means.
    ("Stop texting me", OUT), ("please unsubscribe me", OUT), ("Please stop", OUT),
    ("stop sending me these messages", OUT), ("STOP IT", OUT), ("stop now please", OUT),
    ("I want to unsubscribe", OUT), ("I'd like to opt out", OUT),
    ("can you stop texting me", OUT), ("No more texts", OUT), ("Don't text me again", OUT),
    ("do not message me", OUT), ("take me off your list", OUT), ("leave me alone", OUT),
    ("remove me from your list please", OUT), ("unsubscribe me from this", OUT),
    ("Stop all messages now", OUT), ("cancel my subscription", OUT),
    # Not an opt-out: negated, or the word inside another word.
    ("Don't stop the deals!", NONE), ("never stop sending me coupons", NONE),
    ("I can't stop smiling", NONE), ("unstoppable offers", NONE),
    ("see you this weekend", NONE), ("what are your store hours", NONE),
    ("STOPPING by later", NONE), ("thanks!", NONE), ("", NONE),
    # Doubtful: a stop word, but not a clear request. Kept for review, nothing done.
    ("stop by the store tomorrow?", REVIEW), ("cancel my order 1234", REVIEW),
    ("can I end my contract early and still keep the discount on my plan", REVIEW),
    ("why did you stop the sale", REVIEW),
    # Opt-in, confirmation, help.
    ("START", IN), ("unstop", IN), ("Y", YES), ("yes", YES), ("Yes!", YES), ("HELP", HELP),
    ("info", HELP), ("help?", HELP),
]


@pytest.mark.parametrize(("text", "intent"), TABLE, ids=[t or "<empty>" for t, _ in TABLE])
def test_classify(text: str, intent: Intent) -> None:
    assert classify(text).intent is intent


def test_stop_with_a_program_keyword_carries_it() -> None:
    result = classify("STOP DEALS")
    assert (result.intent, result.argument, result.rule) == (OUT, "deals", "scoped")
    assert classify("stop me").argument == ""


def test_configured_language_families() -> None:
    families = Families.build(opt_out=["ARRET", "11", "خاموش", "لغو"], opt_in=["12"],
                              help=["راهنما"])
    assert classify("Arrêt", families).intent is NONE  # accents are kept: ARRET ≠ ARRÊT
    assert classify("ARRET", families).intent is OUT
    assert classify("۱۱", families).intent is OUT  # Persian digits
    assert classify("١١", families).intent is OUT  # Arabic-Indic digits
    assert classify("11", families).intent is OUT
    assert classify("۱۲", families).intent is IN
    assert classify("لغو", families).intent is OUT
    assert classify("خاموش", families).intent is OUT
    assert classify("راهنما", families).intent is HELP
    assert classify("11", Families.build()).intent is NONE  # only where configured


def test_normalise() -> None:
    assert normalise("  ＳＴＯＰ  ALL!! ") == "stop all"
    assert normalise("كيك") == "کیک"  # Arabic kaf/yeh → Persian
    assert normalise("ز\u200cیبا") == "زیبا"
