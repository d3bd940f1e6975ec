"""Keyword routing in the spirit of aiogram's ``Router``: handlers registered with
decorators, first match wins, on normalised text, with the words after the keyword handed
over as arguments.

    router = Router()

    @router.keyword("BALANCE", "BAL")
    async def balance(ctx: Context) -> str:
        return f"Your balance: {await lookup(ctx.phone)}"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.models import InboundMessage, Reply
from gateway.outbound import NewMessage, Outbox
from gateway.templates import profile_values
from gateway.text import normalise, words

if TYPE_CHECKING:
    from gateway.db import Tx
    from gateway.profiles import Profile, ProfileStore
    from handlers.conversations import Conversations

HandlerResult = list[Reply] | Reply | str | None
Handler = Callable[["Context"], Awaitable[HandlerResult]]
#: Keywords that change while the gateway runs (pull campaigns): asked after the fixed ones.
Source = Callable[[str, list[str]], "tuple[Route, list[str]] | None"]


@dataclass
class Context:
    """What a handler gets: the message, the keyword's arguments, the customer's profile, and
    the transaction everything it does is committed in (with the reply)."""

    tx: Tx
    msg: InboundMessage
    keyword: str  # as registered, normalised
    args: list[str]  # the normalised words after the keyword
    program_id: str | None
    profile: Profile | None
    profiles: ProfileStore
    conversations: Conversations
    outbox: Outbox | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def phone(self) -> str:
        return self.msg.from_number

    @property
    def now(self) -> datetime:
        return self.msg.received_at

    def values(self) -> dict[str, Any]:
        """Fields for templates: the profile's, its attributes, the arguments."""
        return {**profile_values(self.profile, self.phone), "args": " ".join(self.args)}

    async def start_conversation(self, flow_id: str) -> list[Reply]:
        return await self.conversations.start(self.tx, self.msg, flow_id)

    async def reply_later(self, text: str, delay: timedelta,
                          program_id: str | None = None) -> int:
        """A reply that leaves through the outbound pipeline after `delay` (a reminder, the
        result of a slow lookup), queued in this message's transaction: it exists exactly
        when the inbound message does. Returns the queued message's id."""
        if self.outbox is None:
            raise RuntimeError("this router runs without an outbound queue")
        program = program_id or self.program_id
        if program is None:
            raise ValueError("reply_later needs a program (its short code sends it)")
        return await self.outbox.queue(self.tx, NewMessage(
            to_number=self.phone, body=text, program_id=program, purpose="reply",
            not_before=self.now + delay), self.now)


@dataclass(frozen=True)
class Route:
    words: tuple[str, ...]
    handler: Handler
    short_code: str | None
    program_id: str | None


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.fallbacks: list[tuple[str | None, Handler]] = []
        self.sources: list[Source] = []

    def keyword(self, *keywords: str, short_code: str | None = None,
                program: str | None = None) -> Callable[[Handler], Handler]:
        """Register a handler for a keyword and its aliases (one or more words each)."""

        def register(handler: Handler) -> Handler:
            for keyword in keywords:
                tokens = tuple(words(normalise(keyword)))
                if not tokens:
                    raise ValueError(f"keyword {keyword!r} has no words")
                self.routes.append(Route(tokens, handler, short_code, program))
            return handler

        return register

    def fallback(self, short_code: str | None = None) -> Callable[[Handler], Handler]:
        """Register the handler for texts nothing else matched."""

        def register(handler: Handler) -> Handler:
            self.fallbacks.append((short_code, handler))
            return handler

        return register

    def source(self, source: Source) -> None:
        """Register keywords that come and go at run time, matched after the fixed ones."""
        self.sources.append(source)

    def include(self, other: Router) -> None:
        """Add another router's routes after this one's (they match later)."""
        self.routes.extend(other.routes)
        self.fallbacks.extend(other.fallbacks)
        self.sources.extend(other.sources)

    def match(self, short_code: str, text: str) -> tuple[Route, list[str]] | None:
        """The first route whose keyword starts the text, and the words after it."""
        tokens = words(normalise(text))
        for route in self.routes:
            if route.short_code not in (None, short_code):
                continue
            size = len(route.words)
            if tuple(tokens[:size]) == route.words:
                return route, tokens[size:]
        for source in self.sources:
            found = source(short_code, tokens)
            if found is not None:
                return found
        return None

    def fallback_for(self, short_code: str) -> Handler | None:
        return next((h for code, h in self.fallbacks if code in (None, short_code)), None)


def as_replies(result: HandlerResult, program_id: str | None) -> list[Reply]:
    if result is None:
        return []
    if isinstance(result, str):
        return [Reply(result, program_id)] if result else []
    if isinstance(result, Reply):
        return [result]
    return list(result)

