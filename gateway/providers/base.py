"""The provider port: send one message, or fail with an error the pipeline can act on.

The adapter only classifies (transient: retry later; permanent: never retry); the outbound
pipeline decides what to do, as in RapidPro courier's send-error taxonomy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.errors import GatewayError
from gateway.models import OutgoingSMS


class SendErrorKind(enum.StrEnum):
    RATE_LIMITED = "rate_limited"  # 429 / Twilio 20429: slow down, then retry
    SERVER_ERROR = "server_error"  # 5xx: the provider is having trouble
    TIMEOUT = "timeout"  # no answer in time: it *may* have been accepted, reconcile first
    CONNECTION = "connection"  # never reached the provider
    INTERRUPTED = "interrupted"  # the connection broke mid-request: it may have been accepted
    AUTH = "auth"  # our credentials were refused: an operator must fix config; keep the message
    #: The endpoint does not take the request at all (404/405 with no error of the message's
    #: own): the provider's URL or account is wrong. Kept for when an operator fixes it.
    ENDPOINT = "endpoint"
    #: The provider answered something we cannot read (not JSON, not the expected shape):
    #: whether it took the message is unknown.
    MALFORMED = "malformed"
    #: Anything else the adapter or its library raised: a bug or a new failure, treated as
    #: "may have gone", with the exception's class in the message.
    UNEXPECTED = "unexpected"
    REJECTED = "rejected"  # the provider refused this message for good (bad number, body …)
    CONTACT_STOPPED = "contact_stopped"  # the recipient opted out at carrier level (21610)


TRANSIENT_KINDS = frozenset({SendErrorKind.RATE_LIMITED, SendErrorKind.SERVER_ERROR,
                             SendErrorKind.TIMEOUT, SendErrorKind.CONNECTION,
                             SendErrorKind.INTERRUPTED, SendErrorKind.AUTH,
                             SendErrorKind.ENDPOINT, SendErrorKind.MALFORMED,
                             SendErrorKind.UNEXPECTED})
#: The provider may have accepted the message after all: look it up before any resend.
#: (A 5xx usually means it did not, but "usually" is not "never sent twice".)
UNKNOWN_OUTCOME_KINDS = frozenset({SendErrorKind.TIMEOUT, SendErrorKind.SERVER_ERROR,
                                   SendErrorKind.INTERRUPTED, SendErrorKind.MALFORMED,
                                   SendErrorKind.UNEXPECTED})
#: The provider answered about the message itself: it is up, whatever it said.
PROVIDER_ANSWERED_KINDS = frozenset({SendErrorKind.RATE_LIMITED, SendErrorKind.REJECTED,
                                     SendErrorKind.CONTACT_STOPPED})


class SendError(GatewayError):
    """A send that did not succeed; `transient` says whether a retry may."""

    code = "send_error"

    def __init__(self, kind: SendErrorKind, *, provider_code: str | None = None,
                 detail: str = "", http_status: int | None = None) -> None:
        self.kind = kind
        self.provider_code = provider_code
        self.detail = detail or kind.value
        self.provider_http_status = http_status
        code = f" (error {provider_code})" if provider_code else ""
        super().__init__(f"{kind.value}{code}: {self.detail}")

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS

    @property
    def outcome_unknown(self) -> bool:
        return self.kind in UNKNOWN_OUTCOME_KINDS

    @property
    def provider_down(self) -> bool:
        """The failure says the provider (or our way to it) is not working, not that this
        one message is wrong: it counts towards the provider's breaker."""
        return self.kind not in PROVIDER_ANSWERED_KINDS


def unexpected(exc: BaseException, what: str = "provider call") -> SendError:
    """The last clause of every adapter: an exception nobody classified is transient, its
    outcome unknown, and its class is in the message so the log says what it was."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    name = type(exc).__name__
    return SendError(SendErrorKind.UNEXPECTED,
                     detail=f"{what} raised {name}{': ' + text if text else ''}")


@dataclass(frozen=True)
class SendResult:
    provider_sid: str
    status: str  # the provider's own word: queued, accepted, sent …
    num_segments: int | None = None


@dataclass(frozen=True)
class ProviderMessage:
    """A message as the provider's own records show it (crash reconciliation)."""

    sid: str
    to_number: str
    from_number: str
    body: str
    status: str
    created_at: datetime | None
    num_segments: int | None = None


#: Statuses after which a message's delivery changes no more.
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "canceled", "read"})


@dataclass(frozen=True)
class ProviderStatus:
    """A message's status at the provider, fetched when its receipt did not come."""

    sid: str
    status: str
    error_code: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class Provider(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, sms: OutgoingSMS) -> SendResult: ...

    async def lookup(self, sms: OutgoingSMS, since: datetime) -> list[ProviderMessage]:
        """Messages to `sms.to_number` from our sender created since `since`, oldest first."""
        ...

    async def fetch(self, sid: str) -> ProviderStatus:
        """One message's delivery status as the provider knows it (missed receipts)."""
        ...
