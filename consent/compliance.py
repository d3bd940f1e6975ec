"""A dry run of a carrier audit: lint every program's texts and keywords against the CTIA
rules, then replay HELP, JOIN, Y, STOP and START and show what a customer would get."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consent import Consent
from consent.keywords import Families
from consent.programs import Catalog, Program
from gateway.config import Config
from gateway.db import Database
from gateway.models import InboundMessage
from gateway.profiles import ProfileStore
from gateway.sms import segment

_RATES = re.compile(r"msg\s*(?:&|and)\s*data rates may apply", re.IGNORECASE)
_CONTACT = re.compile(r"@|https?://|www\.|\d{3}[-. )]*\d{3}[-. ]*\d{4}|\b1-?800", re.IGNORECASE)
_URL = re.compile(r"https?://|www\.", re.IGNORECASE)
_PROMO = re.compile(r"\b(?:sale|offer|discount|deal of|coupon|\d+\s*%|free|save)\b",
                    re.IGNORECASE)
REPLAY_NUMBER = "+15555550100"


@dataclass(frozen=True)
class Finding:
    level: str  # "error" (a carrier would refuse the program) or "warning"
    program: str
    message: str


def _has(text: str, needle: str) -> bool:
    return needle.casefold() in text.casefold()


def lint(config: Config) -> list[Finding]:
    catalog = Catalog(config)
    families: Families = catalog.families
    found: list[Finding] = []
    for p in catalog.programs.values():
        def add(level: str, message: str, program: Program = p) -> None:
            found.append(Finding(level, program.id, message))

        for word in sorted(p.keywords):
            if families.is_reserved(word):
                add("error", f"keyword {word!r} is reserved (STOP, START, HELP, YES families)")
        texts = p.texts[""]
        required = {"the program name": p.name, "HELP": "HELP", "STOP": "STOP"}
        if p.marketing:
            required["the message frequency"] = p.frequency
        for label, text in (("confirmation request", texts.confirmation_request),
                            ("welcome text", texts.welcome)):
            if label == "confirmation request" and not p.double_opt_in:
                continue
            for what, needle in required.items():
                if not _has(text, needle):
                    add("error", f"{label} does not name {what}")
            if not _RATES.search(text):
                add("error", f"{label} lacks 'Msg & data rates may apply'")
        if not p.terms_url:
            add("warning", "no terms_url: confirmations carry no terms and privacy link")
        if not _has(texts.help, p.name):
            add("error", "help text does not name the program")
        if not (_CONTACT.search(texts.help) or (p.customer_care and _has(texts.help,
                                                                         p.customer_care))):
            add("error", "help text gives no customer-care contact (email, phone or URL)")
        if not _has(texts.help, "STOP"):
            add("error", "help text does not say how to opt out (STOP)")
        opt_out = texts.opt_out.replace("{programs}", p.name)
        if _URL.search(opt_out) or _PROMO.search(opt_out):
            add("error", "opt-out confirmation carries marketing content (a link or an offer)")
        if not _has(opt_out, "START"):
            add("warning", "opt-out confirmation does not say how to rejoin (START)")
        if p.marketing and p.policy.quiet_hours.end.hour == 23:
            add("warning", "a marketing program without quiet hours")
        for label, text in (("help text", texts.help), ("opt-out confirmation", opt_out)):
            parts = segment(text)
            if parts.segments > 1:
                add("warning", f"{label} takes {parts.segments} segments ({parts.encoding})")
    return found


@dataclass(frozen=True)
class Exchange:
    short_code: str
    sent: str
    replies: tuple[str, ...]


async def replay(config: Config) -> list[Exchange]:
    """Text HELP, each join keyword, Y, STOP and START to every short code, in a scratch
    database, and collect the answers."""
    exchanges: list[Exchange] = []
    with tempfile.TemporaryDirectory() as folder:
        db = await Database.open(Path(folder) / "replay.sqlite3")
        try:
            consent = Consent(config, ProfileStore(default_region=config.phone.default_region))
            catalog, responder = consent.catalog, consent.responder
            at = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
            for code in sorted({p.short_code for p in catalog.programs.values()}):
                script = ["HELP"]
                for program in catalog.on_short_code(code):
                    if program.keywords:
                        script.append(sorted(program.keywords)[0])
                        if program.double_opt_in:
                            script.append("Y")
                script += ["STOP", "START"]
                for n, body in enumerate(script):
                    at += timedelta(minutes=1)
                    msg = InboundMessage("replay", f"RP{code}{n}", REPLAY_NUMBER, code,
                                         body.upper(), at)
                    outcome = await db.write(lambda tx, msg=msg: responder.handle(tx, msg))
                    replies = tuple(r.text for r in outcome.replies) if outcome else ()
                    exchanges.append(Exchange(code, body.upper(), replies))
        finally:
            await db.close()
    return exchanges
