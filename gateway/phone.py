"""Phone numbers: E.164 normalisation, short codes, and masking for logs."""

from __future__ import annotations

import re

import phonenumbers

from gateway.errors import InvalidNumber

_SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
# Persian (U+06F0..) and Arabic-Indic (U+0660..) digits are typed by customers in Iran.
_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


def to_e164(raw: str, default_region: str) -> str:
    """Normalise `raw` (national or international form) to E.164, or raise InvalidNumber."""
    text = (raw or "").strip().translate(_DIGITS)
    if not text:
        raise InvalidNumber("empty phone number")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"cannot parse phone number {text!r}: {exc}") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber(f"{text!r} is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_short_code(text: str) -> bool:
    """Short codes are 3–8 digits: 5–6 in the US, up to 8 in Iran (e.g. 3000xxxx)."""
    return bool(_SHORT_CODE.match(text))


def normalise_address(raw: str, default_region: str) -> str:
    """A sender or recipient address: a short code as-is, anything else as E.164."""
    text = (raw or "").strip().translate(_DIGITS)
    if is_short_code(text):
        return text
    return to_e164(text, default_region)


def is_valid_region(region: str) -> bool:
    return region in phonenumbers.SUPPORTED_REGIONS


_E164_IN_TEXT = re.compile(r"\+\d{7,15}")


def mask(number: str) -> str:
    """`+15551234567` → `+1555***4567`: enough to correlate log lines, not to dial."""
    if len(number) <= 8:
        return number[:2] + "***"
    return number[:5] + "***" + number[-4:]


def mask_in_text(text: str) -> str:
    return _E164_IN_TEXT.sub(lambda m: mask(m.group(0)), text)
