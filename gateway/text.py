"""The one normalisation every keyword match uses, so `STOP`, ` stop!` and `ＳＴＯＰ` agree."""

from __future__ import annotations

import re
import unicodedata

#: Persian (U+06F0..) and Arabic-Indic (U+0660..) digits to ASCII (keywords, phone numbers).
ASCII_DIGITS = str.maketrans({
    **{chr(0x06F0 + i): str(i) for i in range(10)},
    **{chr(0x0660 + i): str(i) for i in range(10)},
})
# Also the Arabic letters Persian keyboards produce differently (ي → ی, ك → ک); zero-width
# joiners and marks vanish.
_TABLE = ASCII_DIGITS | str.maketrans({
    "\u064a": "\u06cc", "\u0643": "\u06a9",
    "\u200b": None, "\u200c": None, "\u200d": None, "\u200e": None, "\u200f": None,
    "\u2060": None, "\ufeff": None,
})
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, case-folded, digits to ASCII, inner whitespace collapsed, edge punctuation off."""
    folded = unicodedata.normalize("NFKC", text).translate(_TABLE).casefold()
    return _EDGE.sub("", _SPACE.sub(" ", folded).strip())


def words(text: str) -> list[str]:
    """The words of an already normalised text (apostrophes kept: "don't")."""
    return re.findall(r"[\w']+", text)
