"""Programs as consent sees them: keywords, texts (with CTIA's required parts), policies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from consent.keywords import Families
from consent.rules import QUIET_HOURS_PRESETS, FrequencyCap, Policy, QuietHours
from gateway.config import Config, ProgramConfig, parse_quiet_hours
from gateway.text import normalise

DEFAULT_CONFIRMATION = ("{program}: reply Y to confirm your subscription. {frequency}. "
                        "Msg & data rates may apply. Reply HELP for help, STOP to cancel.{terms}")
DEFAULT_WELCOME = ("{program}: you are subscribed. {frequency}. Msg & data rates may apply. "
                   "Reply HELP for help, STOP to cancel.{terms}")
DEFAULT_OPT_OUT = ("{programs}: you are unsubscribed and will get no more messages. "
                   "Reply START to rejoin.")


@dataclass(frozen=True)
class Texts:
    help: str
    confirmation_request: str
    welcome: str
    opt_out: str


@dataclass(frozen=True)
class Program:
    id: str
    name: str
    short_code: str
    marketing: bool
    double_opt_in: bool
    keywords: frozenset[str]
    frequency: str
    customer_care: str
    terms_url: str
    policy: Policy
    texts: dict[str, Texts]  # "" is the default language

    def text(self, language: str | None) -> Texts:
        lang = (language or "").lower()
        return self.texts.get(lang) or self.texts.get(lang.split("-")[0]) or self.texts[""]


def _fill(template: str, program: ProgramConfig, default: str) -> str:
    terms = f" Terms & privacy: {program.terms_url}" if program.terms_url else ""
    return (template or default).format_map({
        "program": program.name, "frequency": program.frequency, "terms": terms,
        "terms_url": program.terms_url, "customer_care": program.customer_care,
        "short_code": program.short_code,
        "programs": "{programs}"})  # filled per reply: one opt-out may end several


def _quiet_hours(program: ProgramConfig) -> QuietHours:
    window = parse_quiet_hours(program.quiet_hours)
    if window is None:
        base = QUIET_HOURS_PRESETS[program.quiet_hours]
    else:
        start, end = (time.fromisoformat(w) if w != "24:00" else time.max for w in window)
        base = QuietHours(start, end)
    return QuietHours(base.start, base.end, base.no_sunday or program.no_sunday)


class Catalog:
    """Every program of the configuration, looked up by id, short code or keyword."""

    def __init__(self, config: Config) -> None:
        consent = config.consent
        self.stop_scope = consent.stop_scope
        self.pending_for = timedelta(hours=consent.double_opt_in_expiry_hours)
        self.families = Families.build(
            opt_out=consent.opt_out_keywords, opt_in=consent.opt_in_keywords,
            confirm=consent.confirm_keywords, help=consent.help_keywords)
        overall = (FrequencyCap(consent.max_messages, timedelta(hours=consent.cap_window_hours))
                   if consent.max_messages else None)
        self.programs: dict[str, Program] = {}
        #: Whether any program speaks more than one language (else a profile's language
        #: does not change any text, and is not worth reading).
        self.translated = any(p.translations for p in config.programs)
        for p in config.programs:
            texts = {"": Texts(
                help=p.help_text,
                confirmation_request=_fill(p.confirmation_request, p, DEFAULT_CONFIRMATION),
                welcome=_fill(p.welcome_text, p, DEFAULT_WELCOME),
                opt_out=_fill(p.opt_out_text, p, DEFAULT_OPT_OUT))}
            for t in p.translations:
                base = texts[""]
                texts[t.language.lower()] = Texts(
                    help=t.help_text or base.help,
                    confirmation_request=_fill(t.confirmation_request, p,
                                               base.confirmation_request),
                    welcome=_fill(t.welcome_text, p, base.welcome),
                    opt_out=_fill(t.opt_out_text, p, base.opt_out))
            cap = (FrequencyCap(p.max_messages, timedelta(hours=p.cap_window_hours))
                   if p.max_messages else None)
            self.programs[p.id] = Program(
                id=p.id, name=p.name, short_code=p.short_code, marketing=p.kind == "marketing",
                double_opt_in=p.kind == "marketing" and p.double_opt_in,
                keywords=frozenset(normalise(k) for k in p.keywords), frequency=p.frequency,
                customer_care=p.customer_care, terms_url=p.terms_url,
                policy=Policy(_quiet_hours(p), cap, overall), texts=texts)

    def get(self, program_id: str) -> Program | None:
        return self.programs.get(program_id)

    def on_short_code(self, short_code: str) -> list[Program]:
        return [p for p in self.programs.values() if p.short_code == short_code]

    def by_keyword(self, short_code: str, word: str) -> Program | None:
        w = normalise(word)
        return next((p for p in self.on_short_code(short_code) if w in p.keywords), None)

    def stop_targets(self, short_code: str) -> list[Program]:
        """What a plain STOP on `short_code` ends, by the configured scope."""
        if self.stop_scope == "brand":
            return list(self.programs.values())
        return self.on_short_code(short_code)

    def policies(self) -> dict[str, Policy]:
        return {pid: p.policy for pid, p in self.programs.items()}

    def expires(self, at: datetime) -> datetime:
        return at + self.pending_for
