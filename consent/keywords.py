"""Reserved keyword families and the rule that reads an inbound text as opt-out, opt-in,
confirmation or help request.

The rule, applied to the normalised text (gateway.text.normalise):

1. The whole message is a family word or phrase (``STOP``, ``stop all``, ``OPT-OUT``,
   ``START``, ``HELP``, ``Y`` …): that intent. ``STOP <word>`` is an opt-out carrying the word,
   which scopes it to the program with that keyword when there is one.
2. Revocation "by any reasonable means": a message of at most 8 words that asks to stop in
   so many words — it starts with a stop verb (``stop``, ``unsubscribe``, ``cancel``, ``end``,
   ``quit``, ``remove me``, ``opt out``) optionally after ``please``/``pls``/``i want to``/
   ``can you`` …, followed only by words about the messages themselves (``texting me``,
   ``sending these``, ``all messages now``); or it is one of the plain requests ``no more
   texts``, ``don't text me``, ``take me off your list``, ``leave me alone``.
3. A stop word negated (``don't stop``, ``never stop``, ``can't stop``) is not an opt-out.
4. Any other message containing a stop word as a whole word ("stop by the store", "cancel my
   order") is *doubtful*: no action, but kept in the review list for a person to judge.
   A stop word inside another word ("unstoppable", "weekend") is nothing at all.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.text import normalise, words

#: The union of what carriers (CTIA), Twilio and the FCC name as opt-out words.
OPT_OUT = ("STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
           "OPTOUT", "OPT OUT", "OPT-OUT", "REMOVE")
OPT_IN = ("START", "UNSTOP")
CONFIRM = ("Y", "YES")
HELP = ("HELP", "INFO")

MAX_NATURAL_WORDS = 8
_STOP_VERBS = r"(?:stop|unsubscribe|cancel|end|quit|revoke|opt ?-?out|remove me|take me off)"
_LEAD = (r"(?:(?:please|pls|plz|kindly|just|now)\s+)*"
         r"(?:(?:i\s+(?:want|wanna|need|would like)\s+(?:to\s+)?|i'?d like to\s+|"
         r"(?:can|could|will|would)\s+(?:you|u)\s+(?:please\s+)?|let me\s+))?")
_ABOUT_MESSAGES = (r"(?:\s+(?:texting|txting|messaging|sending|contacting|spamming|me|us|"
                   r"this|these|that|them|it|all|texts?|txts?|messages?|msgs?|sms|now|please|"
                   r"pls|plz|immediately|already|right|away|thanks|thank you|from|the|your|"
                   r"my|list|number|program|subscription|of|to|for|asap|ok|okay|you|sir|guys))*")
_NATURAL = re.compile(rf"^{_LEAD}{_STOP_VERBS}{_ABOUT_MESSAGES}$")
_PLAIN_REQUESTS = re.compile(
    r"^(?:please\s+)?(?:no more (?:texts?|messages?|msgs?|sms)|"
    r"(?:don'?t|do not|dont) (?:text|message|msg|contact|sms) me(?: again| anymore| any more)?|"
    r"take me off (?:your|the|this) (?:list|mailing list)|leave me alone|"
    r"unsubscribe me(?: from .*)?|remove me from (?:your|the|this) list)(?:\s+please)?$")
_NEGATED = re.compile(r"\b(?:don'?t|do not|dont|never|can'?t|cannot|won'?t|wont|not)\s+"
                      rf"{_STOP_VERBS}\b")
_STOP_WORD = re.compile(rf"\b{_STOP_VERBS}\b|\bstopall\b|\boptout\b")


class Intent(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"  # START / UNSTOP: come back after STOP
    CONFIRM = "confirm"  # Y / YES: confirm a pending double opt-in (or come back after STOP)
    HELP = "help"
    REVIEW = "review"  # doubtful: keep for a person, do nothing
    NONE = "none"


@dataclass(frozen=True)
class Families:
    """The reserved words, normalised; configuration adds per-language words (ARRET, 11 …)."""

    opt_out: frozenset[str]
    opt_in: frozenset[str]
    confirm: frozenset[str]
    help: frozenset[str]

    @classmethod
    def build(cls, *, opt_out: Iterable[str] = (), opt_in: Iterable[str] = (),
              confirm: Iterable[str] = (), help: Iterable[str] = ()) -> Families:
        def norm(items: Iterable[str]) -> frozenset[str]:
            return frozenset(normalise(i) for i in items if normalise(i))

        return cls(opt_out=norm((*OPT_OUT, *opt_out)), opt_in=norm((*OPT_IN, *opt_in)),
                   confirm=norm((*CONFIRM, *confirm)), help=norm((*HELP, *help)))

    def is_reserved(self, word: str) -> bool:
        w = normalise(word)
        return w in self.opt_out or w in self.opt_in or w in self.confirm or w in self.help


DEFAULT_FAMILIES = Families.build()


@dataclass(frozen=True)
class Classification:
    intent: Intent
    #: The word after an opt-out word (``STOP DEALS`` → ``deals``): maybe a program keyword.
    argument: str = ""
    #: Which part of the rule decided (for the review list and the audit trail).
    rule: str = ""


def classify(text: str, families: Families = DEFAULT_FAMILIES) -> Classification:
    """Read one inbound text; see the module docstring for the rule."""
    t = normalise(text)
    if not t:
        return Classification(Intent.NONE)
    for intent, family in ((Intent.OPT_OUT, families.opt_out), (Intent.OPT_IN, families.opt_in),
                           (Intent.CONFIRM, families.confirm), (Intent.HELP, families.help)):
        if t in family:
            return Classification(intent, rule="exact")
    tokens = words(t)
    if len(tokens) == 2 and tokens[0] in families.opt_out and tokens[1] not in (
            "me", "it", "now", "please", "pls", "all", "this", "texting", "messages"):
        return Classification(Intent.OPT_OUT, argument=tokens[1], rule="scoped")
    if len(tokens) <= MAX_NATURAL_WORDS and not _NEGATED.search(t):
        plain = re.sub(r"[^\w\s']", " ", t)
        plain = re.sub(r"\s+", " ", plain).strip()
        if _NATURAL.match(plain) or _PLAIN_REQUESTS.match(plain):
            return Classification(Intent.OPT_OUT, rule="natural")
    if _NEGATED.search(t):
        return Classification(Intent.NONE, rule="negated")
    if _STOP_WORD.search(t) or any(tok in families.opt_out for tok in tokens):
        return Classification(Intent.REVIEW, rule="contains a stop word")
    return Classification(Intent.NONE)
