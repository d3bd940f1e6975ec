"""SMS encoding and segment counting, as carriers bill and throttle them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# GSM 03.38 default alphabet; the extension table costs two septets per character.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Segmentation:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def segment(body: str) -> Segmentation:
    """How `body` will travel: one non-GSM character switches the whole text to UCS-2."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        units = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units <= single:
        return Segmentation(encoding, units, 1 if units else 0)
    return Segmentation(encoding, units, -(-units // multi))


def non_gsm(body: str) -> list[str]:
    """The characters that force UCS-2 (and so double the cost), in order of appearance."""
    return list(dict.fromkeys(ch for ch in body
                              if ch not in _GSM_BASIC and ch not in _GSM_EXTENDED))
