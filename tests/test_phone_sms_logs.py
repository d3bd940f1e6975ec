"""Numbers, segments and log lines: the small rules everything else relies on."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.errors import InvalidNumber
from gateway.logs import JsonFormatter, PlainFormatter
from gateway.phone import is_short_code, mask, normalise_address, to_e164
from gateway.sms import segment


@pytest.mark.parametrize(("raw", "region", "e164"), [
    ("+1 (555) 123-4567", "US", "+15551234567"),
    ("555.123.4567", "US", "+15551234567"),
    ("09121234567", "IR", "+989121234567"),
    ("۰۹۱۲۱۲۳۴۵۶۷", "IR", "+989121234567"),  # Persian digits
    ("+44 20 7946 0958", "US", "+442079460958"),
])
def test_to_e164(raw: str, region: str, e164: str) -> None:
    assert to_e164(raw, region) == e164


@pytest.mark.parametrize("raw", ["", "   ", "hello", "+1555", "12"])
def test_to_e164_refuses_garbage(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        to_e164(raw, "US")


def test_short_codes_stay_as_they_are() -> None:
    assert is_short_code("12345") and is_short_code("30001234")
    assert not is_short_code("12") and not is_short_code("+12345")
    assert normalise_address("12345", "US") == "12345"
    assert normalise_address("(555) 123-4567", "US") == "+15551234567"


def test_mask() -> None:
    assert mask("+15551234567") == "+1555***4567"
    assert mask("+989121234567") == "+9891***4567"


@pytest.mark.parametrize(("body", "encoding", "segments"), [
    ("", "GSM-7", 0),
    ("a" * 160, "GSM-7", 1),
    ("a" * 161, "GSM-7", 2),
    ("a" * 306, "GSM-7", 2),
    ("a" * 307, "GSM-7", 3),
    ("€" * 80, "GSM-7", 1),  # extension characters cost two septets
    ("€" * 81, "GSM-7", 2),
    ("a" * 69 + "é", "GSM-7", 1),
    ("a" * 69 + "ç", "UCS-2", 1),  # ç is not GSM's Ç: the whole text becomes UCS-2
    ("a" * 70 + "ç", "UCS-2", 2),
    ("سلام" * 17, "UCS-2", 1),
    ("👋" * 35, "UCS-2", 1),  # surrogate pairs count twice
    ("👋" * 36, "UCS-2", 2),
])
def test_segments(body: str, encoding: str, segments: int) -> None:
    result = segment(body)
    assert (result.encoding, result.segments) == (encoding, segments)


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("gateway.test", logging.INFO, __file__, 1, message, args, None)


def test_plain_log_masks_numbers() -> None:
    line = PlainFormatter().format(_record("inbound from %s", "+15551234567"))
    assert "+1555***4567" in line and "+15551234567" not in line
    assert "INFO" in line and "gateway.test" in line


def test_json_log_is_one_object_per_line_and_masked() -> None:
    line = JsonFormatter().format(_record("to %s: %s", "+15551234567", 'say "hi"\nbye'))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "info" and entry["logger"] == "gateway.test"
    assert entry["msg"] == 'to +1555***4567: say "hi"\nbye'


def test_masking_can_be_turned_off() -> None:
    assert "+15551234567" in PlainFormatter(mask=False).format(_record("%s", "+15551234567"))
