"""What the reserved keywords do: record consent and say the carrier-mandated texts.

``ConsentResponder.handle`` runs first for every inbound text (before conversations and
custom keywords). It returns None when the text is not a consent matter, so that a ``YES``
with nothing to confirm still reaches a survey; otherwise the replies to send at once. It
never sends anything itself: the caller commits the events and the replies together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consent.keywords import Classification, Intent, classify
from consent.ledger import ConsentEvent, ConsentLedger, Kind, Source, Status
from consent.programs import Catalog, Program
from gateway.db import Tx
from gateway.db import consent as sql
from gateway.db.profiles import language as profile_language
from gateway.models import InboundMessage, Reply
from gateway.text import words


@dataclass
class Outcome:
    intent: Intent
    replies: list[Reply] = field(default_factory=list)
    consent_event_ids: list[int] = field(default_factory=list)


class ConsentResponder:
    def __init__(self, ledger: ConsentLedger, catalog: Catalog) -> None:
        self.ledger, self.catalog = ledger, catalog

    async def handle(self, tx: Tx, msg: InboundMessage) -> Outcome | None:
        found = classify(msg.body, self.catalog.families)
        join = self._join_keyword(msg) if found.intent is Intent.NONE else None
        if found.intent is Intent.NONE and join is None:
            return None  # the common case: no trip to the database at all
        if found.intent is Intent.REVIEW:
            await sql.add_review(tx, phone=msg.from_number, short_code=msg.to_number,
                                 inbound_sid=msg.provider_sid, text=msg.body, rule=found.rule,
                                 at=msg.received_at)
            return None
        language = (await profile_language(tx, msg.from_number)
                    if self.catalog.translated else None)
        if join is not None:
            return await self.join(tx, msg, join, language)
        if found.intent is Intent.OPT_OUT:
            return await self._opt_out(tx, msg, found, language)
        if found.intent is Intent.HELP:
            return await self._help(tx, msg, language)
        return await self._opt_in(tx, msg, found, language)

    def _join_keyword(self, msg: InboundMessage) -> Program | None:
        tokens = words(msg.body.casefold())
        return self.catalog.by_keyword(msg.to_number, tokens[0]) if tokens else None

    @staticmethod
    def _event(msg: InboundMessage, program_id: str, kind: Kind, reply: str) -> ConsentEvent:
        """What the customer's own text caused, with the text and our answer as evidence."""
        return ConsentEvent(
            phone=msg.from_number, program_id=program_id, kind=kind, source=Source.KEYWORD,
            occurred_at=msg.received_at, inbound_sid=msg.provider_sid, inbound_text=msg.body,
            reply_text=reply, evidence={"short_code": msg.to_number})

    async def _record(self, tx: Tx, msg: InboundMessage, program: Program, kind: Kind,
                      reply: str) -> int:
        event_id, _ = await self.ledger.record(tx, self._event(msg, program.id, kind, reply))
        return event_id

    async def _opt_out(self, tx: Tx, msg: InboundMessage, found: Classification,
                       language: str | None) -> Outcome:
        scoped = self.catalog.by_keyword(msg.to_number, found.argument) \
            if found.argument else None
        targets = [scoped] if scoped else self.catalog.stop_targets(msg.to_number)
        outcome = Outcome(Intent.OPT_OUT)
        if not targets:
            return outcome
        names = ", ".join(p.name for p in targets)
        # Exactly one confirmation, naming what ended, also to a number never subscribed.
        text = targets[0].text(language).opt_out.replace("{programs}", names)
        outcome.consent_event_ids = await self.ledger.opt_out(
            tx, self._event(msg, "", Kind.OPT_OUT, text), [p.id for p in targets])
        outcome.replies.append(Reply(text, targets[0].id if len(targets) == 1 else None))
        return outcome

    async def _help(self, tx: Tx, msg: InboundMessage, language: str | None) -> Outcome:
        programs = self.catalog.on_short_code(msg.to_number)
        outcome = Outcome(Intent.HELP)
        if not programs:
            return outcome
        statuses = await self._statuses(tx, msg)
        subscribed = [p for p in programs if statuses.get(p.id) is Status.OPTED_IN]
        program = (subscribed or programs)[0]
        outcome.replies.append(Reply(program.text(language).help, program.id))
        return outcome

    async def _opt_in(self, tx: Tx, msg: InboundMessage, found: Classification,
                      language: str | None) -> Outcome | None:
        statuses = await self._statuses(tx, msg)
        pending, stopped = [], []
        ever_in: set[str] | None = None  # read only when something was stopped
        for program in self.catalog.on_short_code(msg.to_number):
            status = statuses.get(program.id, Status.NONE)
            if status is Status.PENDING:
                pending.append(program)
            elif status is Status.OPTED_OUT:
                if ever_in is None:
                    ever_in = await self._ever_opted_in(tx, msg.from_number)
                if program.id in ever_in:
                    stopped.append(program)
        outcome = Outcome(found.intent)
        if found.intent is Intent.CONFIRM and pending:
            for program in pending:  # only a Y/YES confirms a double opt-in
                text = program.text(language).welcome
                outcome.consent_event_ids.append(
                    await self._record(tx, msg, program, Kind.OPT_IN_CONFIRMED, text))
                outcome.replies.append(Reply(text, program.id))
            return outcome
        if not stopped:
            # Nothing to restore: START gets an answer; a YES may belong to a conversation.
            if found.intent is Intent.CONFIRM:
                return None
            return await self._help(tx, msg, language)
        for program in stopped:  # START restores what STOP ended, nothing more
            text = program.text(language).welcome
            outcome.consent_event_ids.append(
                await self._record(tx, msg, program, Kind.RE_OPT_IN, text))
            outcome.replies.append(Reply(text, program.id))
        return outcome

    async def _statuses(self, tx: Tx, msg: InboundMessage) -> dict[str, Status]:
        """Program → status of the sender when the message arrived, in one query."""
        return {s.program_id: s.effective(msg.received_at)
                for s in await self.ledger.states(tx, msg.from_number)}

    async def _ever_opted_in(self, tx: Tx, phone: str) -> set[str]:
        """The programs this number was ever opted in to: what START may restore."""
        return {e.program_id for e in await self.ledger.history(tx, phone)
                if e.kind in (Kind.OPT_IN_CONFIRMED, Kind.RE_OPT_IN, Kind.IMPORTED)}

    async def join(self, tx: Tx, msg: InboundMessage, program: Program,
                   language: str | None) -> Outcome:
        """The customer asked to join `program` (its keyword, or a pull campaign that joins):
        a confirmation request under double opt-in, else the welcome."""
        texts = program.text(language)
        state = await self.ledger.state(tx, msg.from_number, program.id)
        outcome = Outcome(Intent.OPT_IN)
        if state.effective(msg.received_at) is Status.OPTED_IN:
            outcome.replies.append(Reply(texts.welcome, program.id))
            return outcome
        if program.double_opt_in:
            text, kind = texts.confirmation_request, Kind.OPT_IN_REQUESTED
        else:
            text, kind = texts.welcome, Kind.OPT_IN_CONFIRMED
        outcome.consent_event_ids.append(await self._record(tx, msg, program, kind, text))
        outcome.replies.append(Reply(text, program.id))
        return outcome
