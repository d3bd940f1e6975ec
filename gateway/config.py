"""Settings: one TOML file read into frozen dataclasses, checked before anything starts.

Every error names the file, the key path (``programs[1].short_code``) and what is wrong,
so a broken file is a one-line message at start, never a traceback.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.errors import ConfigError, InvalidNumber
from gateway.phone import is_short_code, is_valid_region, to_e164


class Secret(str):
    """A string that never shows its value in a repr (config dumps, tracebacks)."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    #: The URL the provider calls; signatures are computed over it, not over the URL we see.
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = 64 * 1024
    shutdown_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class DatabaseConfig:
    path: str = "var/mcrm.sqlite3"
    busy_timeout_ms: int = 5000
    #: Most writes a single group commit may hold.
    max_batch: int = 500


@dataclass(frozen=True)
class PhoneConfig:
    default_region: str = "US"


@dataclass(frozen=True)
class SandboxConfig:
    #: Seconds between a sandbox send and its `sent` receipt; `delivered` follows as long again.
    receipt_delay_seconds: float = 1.0
    #: The key sandbox webhooks are signed with (X-Twilio-Signature's scheme), shared with
    #: `mcrm simulate`. Empty: a random one kept beside the database
    #: (sandbox-webhook.secret), made at the first start.
    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    #: Check that signature. Turn off only to post webhooks by hand (curl) on your machine.
    validate_signatures: bool = True


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: Secret
    messaging_service_sid: str = ""
    #: A Twilio-compatible endpoint instead of https://api.twilio.com (tests, proxies).
    api_base_url: str = ""
    timeout_seconds: float = 10.0
    #: Check X-Twilio-Signature on every webhook. Turn off only behind a trusted proxy.
    validate_signatures: bool = True


@dataclass(frozen=True)
class ProviderConfig:
    kind: Literal["sandbox", "twilio"] = "sandbox"
    #: Segments per second across the whole account, over all short codes (0: no such limit).
    messages_per_second: float = 0.0
    #: Requests per second for look-ups and status fetches (never taken from the send rate).
    reads_per_second: float = 50.0
    #: Sends (or look-ups, or fetches) failing this many times in a row mark the provider
    #: down: its breaker opens and only one probe at a time goes out until one succeeds.
    down_after_failures: int = 5
    #: Longest wait between probes while down (they start 1 s apart and double up to this),
    #: so sending resumes within about this long after the provider comes back.
    probe_max_seconds: float = 4.0
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    twilio: TwilioConfig | None = None


@dataclass(frozen=True)
class ShortCodeConfig:
    code: str
    #: Carrier throughput in message segments per second (Twilio short codes: 100).
    messages_per_second: float = 100.0


@dataclass(frozen=True)
class ProgramTexts:
    """A program's texts in one more language (chosen by the profile's language)."""

    language: str
    help_text: str = ""
    confirmation_request: str = ""
    welcome_text: str = ""
    opt_out_text: str = ""


@dataclass(frozen=True)
class ProgramConfig:
    id: str
    name: str
    short_code: str
    help_text: str
    keywords: tuple[str, ...] = ()
    description: str = ""
    #: "marketing" (recurring promotions: double opt-in, quiet hours, caps) or "transactional".
    kind: Literal["marketing", "transactional"] = "marketing"
    double_opt_in: bool = True
    #: How often, in the words CTIA wants in every confirmation: "Up to 4 msgs/week".
    frequency: str = "Msg frequency varies"
    customer_care: str = ""
    terms_url: str = ""
    #: A preset (default 08:00-21:00, strict 08:00-20:00, strict-no-sunday, always) or
    #: "HH:MM-HH:MM", in the recipient's local time.
    quiet_hours: str = "default"
    no_sunday: bool = False
    #: At most this many marketing messages per window (0: no cap of the program's own).
    max_messages: int = 0
    cap_window_hours: float = 168.0
    #: Segments per second for this program's traffic, within its short code's (0: no limit).
    messages_per_second: float = 0.0
    #: Texts; empty means the English default built from the fields above.
    confirmation_request: str = ""
    welcome_text: str = ""
    opt_out_text: str = ""
    translations: tuple[ProgramTexts, ...] = ()


@dataclass(frozen=True)
class ConsentConfig:
    #: What a plain STOP ends: every program on the short code it was sent to, or every
    #: program of the brand. "STOP <keyword>" always ends just that program.
    stop_scope: Literal["short_code", "brand"] = "short_code"
    brand: str = ""
    double_opt_in_expiry_hours: float = 24.0
    #: A cap across all programs (0: none).
    max_messages: int = 0
    cap_window_hours: float = 168.0
    #: Words added to the reserved families (other languages, local practice).
    opt_out_keywords: tuple[str, ...] = ()
    opt_in_keywords: tuple[str, ...] = ()
    confirm_keywords: tuple[str, ...] = ()
    help_keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeywordConfig:
    """A keyword a marketer declares without Python: answer, tag, set, start a survey."""

    #: The keyword and its aliases, matched on normalised text ("HOURS", "ساعت").
    words: tuple[str, ...]
    #: The program whose short code answers it.
    program: str
    #: Reply template: profile fields with defaults ("Hi {first_name|there}"), {args}.
    reply: str = ""
    tags: tuple[str, ...] = ()
    #: Set this profile attribute to the words after the keyword ("ZIP 10001" → "10001").
    attribute: str = ""
    #: Start this conversation (its first prompt follows the reply, if any).
    conversation: str = ""


@dataclass(frozen=True)
class BranchConfig:
    answer: str
    next: str


@dataclass(frozen=True)
class StepConfig:
    id: str
    prompt: str
    type: Literal["choice", "yes_no", "number", "text", "date"] = "text"
    choices: tuple[str, ...] = ()
    #: For a number: [lowest, highest] accepted.
    range: tuple[float, ...] = ()
    #: The profile attribute the answer is stored in.
    attribute: str = ""
    #: The step after this one: "" the next in order, "end" to finish.
    next: str = ""
    #: Where particular answers lead instead (choice and yes_no answers).
    branches: tuple[BranchConfig, ...] = ()
    #: Said before the prompt again after an answer that does not fit.
    reprompt: str = "Sorry, I did not get that."
    max_retries: int = 2


@dataclass(frozen=True)
class ConversationConfig:
    id: str
    program: str
    steps: tuple[StepConfig, ...]
    final: str = ""
    #: A conversation nobody answers for this long ends quietly.
    expiry_hours: float = 24.0


@dataclass(frozen=True)
class InboundConfig:
    #: The answer to a text no keyword matches ("" to say nothing).
    fallback_reply: str = ""
    #: At most this many automatic replies per number per window, then silence (loops with
    #: auto-responders, floods). Opt-out confirmations are always sent.
    max_auto_replies: int = 10
    auto_reply_window_minutes: float = 60.0


@dataclass(frozen=True)
class OutboundConfig:
    #: Provider requests in flight at once, per short code.
    max_in_flight: int = 32
    #: A message that could not be handed to the provider this long after it was queued is
    #: `expired`, never sent stale (Twilio's own queue keeps a message at most 4 hours).
    validity_minutes: float = 240.0
    #: Back-off after a transient error: doubles from the first value up to the second,
    #: with jitter, until the message's validity ends. Look-ups that fail wait the same way.
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    #: After a send whose outcome is unknown (timeout, 5xx, a crash), wait this long before
    #: looking the message up at the provider, so a late acceptance is seen (> its timeout).
    reconcile_after_seconds: float = 30.0
    #: A message whose outcome is still unknown this long after its hand-over (the
    #: provider's look-ups kept failing) is given up ("give_up": failed, never sent twice:
    #: at most once) or sent again ("resend": at least once, perhaps twice).
    unknown_outcome_minutes: float = 60.0
    unknown_outcome: Literal["give_up", "resend"] = "give_up"
    #: A message sent this long ago with no final receipt has its status fetched from the
    #: provider (receipts sent while the gateway was down are never sent again); then again
    #: at doubling intervals up to the second value, until it is this many hours old.
    receipt_check_after_seconds: float = 900.0
    receipt_recheck_max_seconds: float = 14400.0
    receipt_max_age_hours: float = 24.0
    #: After a 429 the short code sends at this fraction of its rate for this long.
    slow_down_factor: float = 0.5
    slow_down_seconds: float = 30.0
    #: Longest body accepted, in characters (Twilio refuses more than 1600).
    max_body_chars: int = 1600


@dataclass(frozen=True)
class CampaignsConfig:
    #: Recipients queued per transaction while a run streams its audience out.
    batch_size: int = 500
    #: A run queues no further while this many of its messages wait, ready, for the sender:
    #: pausing stays cheap and the audience never piles up in the send queue.
    queue_ahead: int = 2000
    #: Audience members written per transaction when a run fixes its recipients.
    materialise_chunk: int = 20000
    #: A run missed while the gateway was down runs at start if it is at most this late;
    #: later, it is recorded as missed.
    missed_run_grace_minutes: float = 60.0
    #: A reply or an opt-out this long after a campaign's message is counted for it.
    attribution_hours: float = 48.0


@dataclass(frozen=True)
class ApiConfig:
    tokens: tuple[Secret, ...] = ()


@dataclass(frozen=True)
class SyncEndpointConfig:
    name: str
    url: str
    #: Key of the HMAC-SHA256 signature the receiver checks (X-MCRM-Signature).
    secret: Secret
    timeout_seconds: float = 10.0
    batch_size: int = 100


@dataclass(frozen=True)
class SyncConfig:
    endpoints: tuple[SyncEndpointConfig, ...] = ()
    #: Events still undelivered this long after they were queued become dead letters.
    max_age_hours: float = 72.0
    #: After a failed delivery the relay waits, doubling from the first value to the second
    #: (with jitter); new events never cut the wait short.
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    poll_interval_seconds: float = 1.0
    #: An endpoint failing this many times in a row is reported down (/readyz, metrics).
    down_after_failures: int = 5


@dataclass(frozen=True)
class ImportConfig:
    #: Largest file `POST /api/v1/profiles/import` accepts.
    max_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["plain", "json"] = "plain"
    mask_phone_numbers: bool = True
    #: Put message bodies in log lines (the sandbox's "sent" line). Bodies carry names and
    #: codes: for debugging on your own machine only.
    message_text: bool = False


@dataclass(frozen=True)
class Config:
    service: ServiceConfig = field(default_factory=ServiceConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    phone: PhoneConfig = field(default_factory=PhoneConfig)
    provider: ProviderConfig = field(default_factory=ProviderConfig)
    short_codes: tuple[ShortCodeConfig, ...] = ()
    programs: tuple[ProgramConfig, ...] = ()
    api: ApiConfig = field(default_factory=ApiConfig)
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    campaigns: CampaignsConfig = field(default_factory=CampaignsConfig)
    inbound: InboundConfig = field(default_factory=InboundConfig)
    keywords: tuple[KeywordConfig, ...] = ()
    conversations: tuple[ConversationConfig, ...] = ()
    sync: SyncConfig = field(default_factory=SyncConfig)
    imports: ImportConfig = field(default_factory=ImportConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    #: Where the settings came from; relative paths in the file are taken from its folder.
    source: str = "<defaults>"

    def short_code(self, code: str) -> ShortCodeConfig | None:
        return next((s for s in self.short_codes if s.code == code), None)

    def database_path(self) -> Path:
        path = Path(self.database.path)
        if path.is_absolute() or self.source.startswith("<"):
            return path
        return Path(self.source).resolve().parent / path


#: Bounds for every number in the file (each key has its own checks besides): ints fit
#: SQLite's and C's 32-bit settings, and any duration stays within what datetime can add.
MAX_INT = 2**31 - 1
MAX_NUMBER = 1e9
MAX_DURATION = {"hours": 1e6, "minutes": 6e7}  # about a century: now ± it is still a date


def load_config(path: str | os.PathLike[str], environ: typing.Mapping[str, str] | None = None
                ) -> Config:
    """Read and check the file at `path`; raises ConfigError with file and key on any fault."""
    file = str(path)
    try:
        with open(file, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(file, None, "file not found") from None
    except OSError as exc:
        raise ConfigError(file, None, f"cannot read file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, None, f"invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(file, None, f"not UTF-8 (byte {exc.object[exc.start:exc.end]!r} "
                                      f"at offset {exc.start})") from None
    return parse_config(raw, file=file, environ=os.environ if environ is None else environ)


def parse_config(raw: dict[str, Any], *, file: str = "<memory>",
                 environ: typing.Mapping[str, str] | None = None) -> Config:
    builder = _Builder(file, os.environ if environ is None else environ)
    raw = {k: v for k, v in raw.items() if k != "source"} | {"source": file}
    config = builder.build(Config, raw, "")
    _check(config, file)
    return config


class _Builder:
    """Turns TOML tables into the dataclasses above, driven by their type hints."""

    def __init__(self, file: str, environ: typing.Mapping[str, str]) -> None:
        self.file, self.environ = file, environ

    def fail(self, key: str, message: str) -> typing.NoReturn:
        raise ConfigError(self.file, key or None, message)

    def build(self, cls: type, raw: Any, key: str) -> Any:
        if not isinstance(raw, dict):
            self.fail(key, f"expected a table, got {_kind(raw)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            where = _join(key, unknown[0])
            self.fail(where, f"unknown key (known keys here: {', '.join(sorted(fields))})")
        values: dict[str, Any] = {}
        for name, f in fields.items():
            sub = _join(key, name)
            if name in raw:
                values[name] = self.value(hints[name], raw[name], sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.fail(sub, "missing required value")
        return cls(**values)

    def value(self, hint: Any, raw: Any, key: str) -> Any:
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(hint) if a is not type(None)]
            return self.value(inner[0], raw, key)
        if origin is Literal:
            choices = typing.get_args(hint)
            if raw not in choices:
                allowed = ", ".join(repr(c) for c in choices)
                self.fail(key, f"must be one of {allowed}, got {raw!r}")
            return raw
        if origin is tuple:
            if not isinstance(raw, list):
                self.fail(key, f"expected an array, got {_kind(raw)}")
            item = typing.get_args(hint)[0]
            return tuple(self.value(item, v, f"{key}[{i}]") for i, v in enumerate(raw))
        if dataclasses.is_dataclass(hint):
            return self.build(hint, raw, key)
        if hint in (str, Secret):
            if not isinstance(raw, str):
                self.fail(key, f"expected a string, got {_kind(raw)}")
            text = self.resolve_env(raw, key)
            return Secret(text) if hint is Secret else text
        if hint is bool:
            if not isinstance(raw, bool):
                self.fail(key, f"expected true or false, got {_kind(raw)}")
            return raw
        if hint is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                self.fail(key, f"expected an integer, got {_kind(raw)}")
            if not -MAX_INT <= raw <= MAX_INT:
                self.fail(key, f"{raw} is out of range (at most {MAX_INT:,})")
            return raw
        if hint is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                self.fail(key, f"expected a number, got {_kind(raw)}")
            if not math.isfinite(raw):
                self.fail(key, f"must be a finite number, got {raw}")
            bound = MAX_DURATION.get(key.rsplit("_", 1)[-1], MAX_NUMBER)
            if not -bound <= raw <= bound:
                self.fail(key, f"{raw:g} is out of range (at most {bound:g})")
            return float(raw)
        # A type the builder does not know is a bug in this module, not a user error.
        raise TypeError(f"config type {hint!r} at {key} is not supported")

    def resolve_env(self, text: str, key: str) -> str:
        if not text.startswith("env:"):
            return text
        name = text[4:]
        if not name:
            self.fail(key, "'env:' must be followed by an environment variable name")
        if name not in self.environ:
            self.fail(key, f"environment variable {name} is not set")
        return self.environ[name]


def _check(config: Config, file: str) -> None:
    """Rules that span keys: ranges, phone formats, references between tables."""

    def fail(key: str, message: str) -> typing.NoReturn:
        raise ConfigError(file, key, message)

    svc = config.service
    if not 0 <= svc.port <= 65535:
        fail("service.port", f"must be between 0 and 65535, got {svc.port}")
    if not svc.public_url.startswith(("http://", "https://")):
        fail("service.public_url", f"must start with http:// or https://, got {svc.public_url!r}")
    if svc.max_body_bytes < 1024:
        fail("service.max_body_bytes", "must be at least 1024")
    if svc.shutdown_timeout_seconds < 0:
        fail("service.shutdown_timeout_seconds", "must not be negative")
    if not config.database.path:
        fail("database.path", "must not be empty")
    if config.database.busy_timeout_ms < 0:
        fail("database.busy_timeout_ms", "must not be negative")
    if config.database.max_batch < 1:
        fail("database.max_batch", "must be at least 1")
    region = config.phone.default_region
    if not is_valid_region(region):
        fail("phone.default_region", f"{region!r} is not a known region code (e.g. 'US', 'IR')")

    provider = config.provider
    if provider.sandbox.receipt_delay_seconds < 0:
        fail("provider.sandbox.receipt_delay_seconds", "must not be negative")
    if provider.sandbox.webhook_secret and len(provider.sandbox.webhook_secret) < 16:
        fail("provider.sandbox.webhook_secret", "must be at least 16 characters long "
                                                "(or empty: a random one is made)")
    if provider.kind == "twilio":
        tw = provider.twilio
        if tw is None:
            fail("provider.twilio", "missing required table when provider.kind is 'twilio'")
        if not (tw.account_sid.startswith("AC") and len(tw.account_sid) == 34):
            fail("provider.twilio.account_sid", "must be 'AC' followed by 32 characters")
        if not tw.auth_token:
            fail("provider.twilio.auth_token", "must not be empty")
        if tw.messaging_service_sid and not tw.messaging_service_sid.startswith("MG"):
            fail("provider.twilio.messaging_service_sid", "must start with 'MG'")
        if tw.api_base_url and not tw.api_base_url.startswith(("http://", "https://")):
            fail("provider.twilio.api_base_url", "must start with http:// or https://")
        if tw.timeout_seconds <= 0:
            fail("provider.twilio.timeout_seconds", "must be greater than 0")

    seen_codes: set[str] = set()
    for i, sc in enumerate(config.short_codes):
        key = f"short_codes[{i}]"
        if not is_short_code(sc.code):
            try:
                to_e164(sc.code, region)
            except InvalidNumber:
                fail(f"{key}.code", f"{sc.code!r} is not a short code (3–8 digits) "
                                    "nor a valid phone number")
            if not sc.code.startswith("+"):
                fail(f"{key}.code", f"write long numbers in E.164 form (+...), got {sc.code!r}")
        if sc.code in seen_codes:
            fail(f"{key}.code", f"short code {sc.code} is listed twice")
        seen_codes.add(sc.code)
        if sc.messages_per_second <= 0:
            fail(f"{key}.messages_per_second", "must be greater than 0")

    seen_ids: set[str] = set()
    keywords: dict[tuple[str, str], str] = {}
    for i, program in enumerate(config.programs):
        key = f"programs[{i}]"
        _check_name(program.id, seen_ids, f"{key}.id", "program id", fail)
        if program.short_code not in seen_codes:
            fail(f"{key}.short_code",
                 f"{program.short_code!r} is not one of the configured short_codes")
        if not program.help_text.strip():
            fail(f"{key}.help_text", "must not be empty (carriers require a HELP answer)")
        _check_program_policy(program, key, fail)
        for j, word in enumerate(program.keywords):
            if not word.strip():
                fail(f"{key}.keywords[{j}]", "must not be empty")
            slot = (program.short_code, word.strip().casefold())
            if slot in keywords:
                fail(f"{key}.keywords[{j}]", f"keyword {word!r} is already used by program "
                                             f"{keywords[slot]!r} on short code {slot[0]}")
            keywords[slot] = program.id

    _check_conversations(config, fail)
    _check_keywords(config, keywords, fail)
    _check_consent(config.consent, fail)
    _check_sync(config.sync, fail)
    _check_outbound(config, fail)
    if config.imports.max_bytes < 1024:
        fail("imports.max_bytes", "must be at least 1024")

    for i, token in enumerate(config.api.tokens):
        if len(token) < 16:
            fail(f"api.tokens[{i}]", "must be at least 16 characters long")


_PRESETS = ("default", "strict", "strict-no-sunday", "always")
_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")


def parse_quiet_hours(spec: str) -> tuple[str, str] | None:
    """"08:00-20:00" → ("08:00", "20:00"); None for a preset name or a bad value."""
    match = _HOURS.match(spec)
    if not match or (match[1], match[2]) >= (match[3], match[4]):
        return None
    return f"{match[1]}:{match[2]}", f"{match[3]}:{match[4]}"


def _check_program_policy(program: ProgramConfig, key: str,
                          fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
    if program.quiet_hours not in _PRESETS and parse_quiet_hours(program.quiet_hours) is None:
        fail(f"{key}.quiet_hours", f"{program.quiet_hours!r} is neither a preset "
             f"({', '.join(_PRESETS)}) nor a window like '08:00-20:00'")
    if program.max_messages < 0:
        fail(f"{key}.max_messages", "must not be negative")
    if program.cap_window_hours <= 0:
        fail(f"{key}.cap_window_hours", "must be greater than 0")
    languages: set[str] = set()
    for i, texts in enumerate(program.translations):
        if not texts.language or texts.language in languages:
            fail(f"{key}.translations[{i}].language", "must be set, once per language")
        languages.add(texts.language)


def _check_keywords(config: Config, taken: dict[tuple[str, str], str],
                    fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
    programs = {p.id: p for p in config.programs}
    conversations = {c.id for c in config.conversations}
    for i, keyword in enumerate(config.keywords):
        key = f"keywords[{i}]"
        program = programs.get(keyword.program)
        if program is None:
            fail(f"{key}.program", f"{keyword.program!r} is not a configured program")
        if not keyword.words:
            fail(f"{key}.words", "needs at least one word")
        for j, word in enumerate(keyword.words):
            if not word.strip():
                fail(f"{key}.words[{j}]", "must not be empty")
            slot = (program.short_code, word.strip().casefold())
            if slot in taken:
                fail(f"{key}.words[{j}]", f"keyword {word!r} is already used by "
                                          f"{taken[slot]!r} on short code {slot[0]}")
            taken[slot] = f"keywords[{i}]"
        if keyword.conversation and keyword.conversation not in conversations:
            fail(f"{key}.conversation", f"{keyword.conversation!r} is not a configured "
                                        "conversation")
        if not (keyword.reply or keyword.tags or keyword.attribute or keyword.conversation):
            fail(key, "does nothing: give it a reply, tags, an attribute or a conversation")
    if config.inbound.max_auto_replies < 1:
        fail("inbound.max_auto_replies", "must be at least 1")
    if config.inbound.auto_reply_window_minutes <= 0:
        fail("inbound.auto_reply_window_minutes", "must be greater than 0")


def _check_conversations(config: Config,
                         fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
    programs = {p.id for p in config.programs}
    names: set[str] = set()
    for i, conv in enumerate(config.conversations):
        key = f"conversations[{i}]"
        _check_name(conv.id, names, f"{key}.id", "conversation", fail)
        if conv.program not in programs:
            fail(f"{key}.program", f"{conv.program!r} is not a configured program")
        if not conv.steps:
            fail(f"{key}.steps", "needs at least one step")
        if conv.expiry_hours <= 0:
            fail(f"{key}.expiry_hours", "must be greater than 0")
        ids: set[str] = set()
        for j, step in enumerate(conv.steps):
            _check_name(step.id, ids, f"{key}.steps[{j}].id", "step", fail)
        for j, step in enumerate(conv.steps):
            where = f"{key}.steps[{j}]"
            if not step.prompt.strip():
                fail(f"{where}.prompt", "must not be empty")
            if step.type == "choice" and not step.choices:
                fail(f"{where}.choices", "a choice step needs its choices")
            if step.range and (len(step.range) != 2 or step.range[0] > step.range[1]):
                fail(f"{where}.range", "must be [lowest, highest]")
            if step.max_retries < 0:
                fail(f"{where}.max_retries", "must not be negative")
            targets = [(f"{where}.next", step.next)] + [
                (f"{where}.branches[{b}].next", br.next) for b, br in enumerate(step.branches)]
            for target_key, target in targets:
                if target and target != "end" and target not in ids:
                    fail(target_key, f"{target!r} is not a step of this conversation "
                                     "(or 'end')")


def _check_consent(consent: ConsentConfig,
                   fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
    if consent.double_opt_in_expiry_hours <= 0:
        fail("consent.double_opt_in_expiry_hours", "must be greater than 0")
    if consent.max_messages < 0:
        fail("consent.max_messages", "must not be negative")
    if consent.cap_window_hours <= 0:
        fail("consent.cap_window_hours", "must be greater than 0")


def _check_name(name: str, seen: set[str], key: str, what: str,
                fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
    """An identifier used in URLs, metrics and the database: plain, and unique."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        fail(key, f"must be letters, digits, '-' or '_', got {name!r}")
    if name in seen:
        fail(key, f"{what} {name!r} is used twice")
    seen.add(name)


def _check_outbound(config: Config, fail: typing.Callable[[str, str], typing.NoReturn]
                    ) -> None:
    out = config.outbound
    for name in ("validity_minutes", "retry_initial_seconds", "retry_max_seconds",
                 "slow_down_seconds"):
        if getattr(out, name) <= 0:
            fail(f"outbound.{name}", "must be greater than 0")
    if out.reconcile_after_seconds < 0:
        fail("outbound.reconcile_after_seconds", "must not be negative")
    if out.retry_max_seconds < out.retry_initial_seconds:
        fail("outbound.retry_max_seconds",
             "must not be less than outbound.retry_initial_seconds")
    if not 1 <= out.max_in_flight <= 1000:
        fail("outbound.max_in_flight", "must be from 1 to 1000")
    if not 0 < out.slow_down_factor <= 1:
        fail("outbound.slow_down_factor", "must be greater than 0 and at most 1")
    if not 1 <= out.max_body_chars <= 1600:
        fail("outbound.max_body_chars", "must be from 1 to 1600 (Twilio's limit)")
    camp = config.campaigns
    for name in ("batch_size", "queue_ahead", "materialise_chunk"):
        if not 1 <= getattr(camp, name) <= 1_000_000:
            fail(f"campaigns.{name}", "must be from 1 to 1000000")
    for name in ("missed_run_grace_minutes", "attribution_hours"):
        if getattr(camp, name) < 0:
            fail(f"campaigns.{name}", "must not be negative")
    if config.provider.messages_per_second < 0:
        fail("provider.messages_per_second", "must not be negative (0: no account limit)")
    if config.provider.reads_per_second <= 0:
        fail("provider.reads_per_second", "must be greater than 0")
    if not 1 <= config.provider.down_after_failures <= 1000:
        fail("provider.down_after_failures", "must be from 1 to 1000")
    if config.provider.probe_max_seconds < 1:
        fail("provider.probe_max_seconds", "must be at least 1")
    for name in ("unknown_outcome_minutes", "receipt_check_after_seconds",
                 "receipt_recheck_max_seconds", "receipt_max_age_hours"):
        if getattr(out, name) <= 0:
            fail(f"outbound.{name}", "must be greater than 0")
    if out.unknown_outcome_minutes * 60 <= out.reconcile_after_seconds:
        fail("outbound.unknown_outcome_minutes",
             "must be longer than outbound.reconcile_after_seconds (a look-up comes first)")
    for i, program in enumerate(config.programs):
        if program.messages_per_second < 0:
            fail(f"programs[{i}].messages_per_second", "must not be negative (0: no limit)")


def _check_sync(sync: SyncConfig, fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
    for name in ("max_age_hours", "retry_initial_seconds", "retry_max_seconds",
                 "poll_interval_seconds"):
        if getattr(sync, name) <= 0:
            fail(f"sync.{name}", "must be greater than 0")
    if sync.retry_max_seconds < sync.retry_initial_seconds:
        fail("sync.retry_max_seconds", "must not be less than sync.retry_initial_seconds")
    if not 1 <= sync.down_after_failures <= 1000:
        fail("sync.down_after_failures", "must be from 1 to 1000")
    names: set[str] = set()
    for i, endpoint in enumerate(sync.endpoints):
        key = f"sync.endpoints[{i}]"
        _check_name(endpoint.name, names, f"{key}.name", "endpoint name", fail)
        if not endpoint.url.startswith(("http://", "https://")):
            fail(f"{key}.url", "must start with http:// or https://")
        if len(endpoint.secret) < 16:
            fail(f"{key}.secret", "must be at least 16 characters long")
        if endpoint.timeout_seconds <= 0:
            fail(f"{key}.timeout_seconds", "must be greater than 0")
        if not 1 <= endpoint.batch_size <= 1000:
            fail(f"{key}.batch_size", "must be from 1 to 1000")


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
