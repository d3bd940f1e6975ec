"""Multi-step conversations: named steps, typed answers, re-prompts, branches, expiry.

State is one row per (customer, short code), written in the same transaction as the reply,
so a restart mid-conversation continues where it was. Every step lands on the profile's
timeline (``conversation.*``), and an answer with an ``attribute`` on the profile itself.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date, datetime, timedelta
from typing import Any

from gateway.clock import isoformat
from gateway.config import ConversationConfig, StepConfig
from gateway.db import Row, Tx
from gateway.db import conversations as sql
from gateway.models import InboundMessage, Reply
from gateway.profiles import ProfileChanges, ProfileStore
from gateway.templates import profile_values, render
from gateway.text import ASCII_DIGITS, normalise

YES = frozenset({"yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "si", "oui", "ja",
                 "بله", "آره", "اره", "بلی"})
NO = frozenset({"no", "n", "nope", "nah", "non", "nein", "نه", "خیر", "نخیر"})
_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d")
_NUMBER = re.compile(r"^[-+]?\d+([.,]\d+)?$")


class Flow:
    """A conversation as configured (or built in Python)."""

    def __init__(self, config: ConversationConfig) -> None:
        self.id, self.program_id = config.id, config.program
        self.steps = {s.id: s for s in config.steps}
        self.order = [s.id for s in config.steps]
        self.final = config.final
        self.expiry = timedelta(hours=config.expiry_hours)

    @property
    def first(self) -> StepConfig:
        return self.steps[self.order[0]]

    def after(self, step: StepConfig, value: Any) -> StepConfig | None:
        """The next step for this answer; None when the conversation is over."""
        target = next((b.next for b in step.branches
                       if normalise(b.answer) == normalise(str(value))), step.next)
        if target == "end":
            return None
        if target:
            return self.steps[target]
        position = self.order.index(step.id) + 1
        return self.steps[self.order[position]] if position < len(self.order) else None


def parse_answer(step: StepConfig, text: str) -> tuple[bool, Any]:
    """(fits, value) of a customer's answer to `step`."""
    said = normalise(text)
    if not said:
        return False, None
    if step.type == "choice":
        for number, choice in enumerate(step.choices, start=1):
            if said in (normalise(choice), str(number)):
                return True, choice
        return False, None
    if step.type == "yes_no":
        first = said.split()[0]
        if said in YES or first in YES:
            return True, "yes"
        if said in NO or first in NO:
            return True, "no"
        return False, None
    if step.type == "number":
        raw = unicodedata.normalize("NFKC", text).translate(ASCII_DIGITS).strip()
        if not _NUMBER.match(raw):  # not `said`: normalising takes a leading minus off
            return False, None
        number = float(raw.replace(",", "."))
        if step.range and not step.range[0] <= number <= step.range[1]:
            return False, None
        return True, int(number) if number.is_integer() else number
    if step.type == "date":
        for fmt in _DATE_FORMATS:
            try:
                return True, datetime.strptime(said, fmt).date().isoformat()
            except ValueError:
                continue
        return False, None
    return True, text.strip()  # free text, as written


def hint(step: StepConfig) -> str:
    """What a fitting answer looks like, for the re-prompt."""
    if step.type == "choice":
        return "Reply " + ", ".join(f"{n} for {c}" for n, c in enumerate(step.choices, 1))
    if step.type == "yes_no":
        return "Reply YES or NO"
    if step.type == "number" and step.range:
        low, high = (int(v) if float(v).is_integer() else v for v in step.range)
        return f"Reply a number from {low} to {high}"
    if step.type == "number":
        return "Reply a number"
    if step.type == "date":
        return f"Reply a date like {date(2026, 12, 31).isoformat()}"
    return ""


class Conversations:
    def __init__(self, flows: dict[str, Flow], profiles: ProfileStore) -> None:
        self.flows, self.profiles = flows, profiles

    async def active(self, tx: Tx, msg: InboundMessage) -> tuple[Row, Flow] | None:
        """This customer's conversation on this short code, unless it expired (then it ends
        quietly here) or its flow is no longer configured."""
        row = await sql.get(tx, msg.from_number, msg.to_number)
        if row is None:
            return None
        flow = self.flows.get(row["flow"])
        if flow is None or row["step"] not in flow.steps or \
                datetime.fromisoformat(row["expires_at"]) <= msg.received_at:
            await self._end(tx, msg, row["flow"], "expired" if flow else "removed")
            return None
        return row, flow

    async def start(self, tx: Tx, msg: InboundMessage, flow_id: str) -> list[Reply]:
        flow = self.flows[flow_id]
        existing = await sql.get(tx, msg.from_number, msg.to_number)
        if existing is not None:  # at most one per short code: the new one replaces it
            await self._end(tx, msg, existing["flow"], "replaced")
        await self._save(tx, msg, flow, flow.first, 0, {}, isoformat(msg.received_at))
        await self.profiles.record(tx, msg.from_number, "conversation.started",
                                   {"conversation": flow.id, "short_code": msg.to_number},
                                   msg.received_at)
        return [await self._prompt(tx, msg, flow, flow.first)]

    async def answer(self, tx: Tx, msg: InboundMessage, row: Row, flow: Flow) -> list[Reply]:
        step = flow.steps[row["step"]]
        fits, value = parse_answer(step, msg.body)
        answers: dict[str, Any] = json.loads(row["answers_json"])
        if not fits:
            if row["retries"] >= step.max_retries:
                await self._end(tx, msg, flow.id, "gave_up", step=step.id)
                return []
            await self._save(tx, msg, flow, step, row["retries"] + 1, answers, row["started_at"])
            prompt = await self._prompt(tx, msg, flow, step)
            text = " ".join(filter(None, (step.reprompt, prompt.text, hint(step))))
            return [Reply(text, flow.program_id)]
        answers[step.id] = value
        if step.attribute:
            await self.profiles.apply(tx, msg.from_number, ProfileChanges(
                attributes={step.attribute: value}), msg.received_at,
                source=f"conversation:{flow.id}")
        await self.profiles.record(tx, msg.from_number, "conversation.answer", {
            "conversation": flow.id, "step": step.id, "answer": value, "text": msg.body},
            msg.received_at)
        following = flow.after(step, value)
        if following is None:
            await self._end(tx, msg, flow.id, "finished", answers=answers)
            if not flow.final:
                return []
            return [Reply(render(flow.final, await self._values(tx, msg)), flow.program_id)]
        await self._save(tx, msg, flow, following, 0, answers, row["started_at"])
        return [await self._prompt(tx, msg, flow, following)]

    async def stop(self, tx: Tx, msg: InboundMessage, reason: str) -> bool:
        """End the customer's conversation on this short code (STOP); True if there was one."""
        row = await sql.get(tx, msg.from_number, msg.to_number)
        if row is None:
            return False
        await self._end(tx, msg, row["flow"], reason)
        return True

    async def _save(self, tx: Tx, msg: InboundMessage, flow: Flow, step: StepConfig,
                    retries: int, answers: dict[str, Any], started_at: str) -> None:
        await sql.put(tx, phone=msg.from_number, short_code=msg.to_number, flow=flow.id,
                      step=step.id, retries=retries, answers=answers, started_at=started_at,
                      now=msg.received_at, expires_at=msg.received_at + flow.expiry)

    async def _end(self, tx: Tx, msg: InboundMessage, flow_id: str, how: str,
                   **data: Any) -> None:
        await sql.delete(tx, msg.from_number, msg.to_number)
        await self.profiles.record(tx, msg.from_number, f"conversation.{how}",
                                   {"conversation": flow_id, **data}, msg.received_at)

    async def _prompt(self, tx: Tx, msg: InboundMessage, flow: Flow,
                      step: StepConfig) -> Reply:
        return Reply(render(step.prompt, await self._values(tx, msg)), flow.program_id)

    async def _values(self, tx: Tx, msg: InboundMessage) -> dict[str, Any]:
        return profile_values(await self.profiles.load(tx, msg.from_number), msg.from_number)
