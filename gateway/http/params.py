"""Reading the common parts of an admin API request, with clear 400s."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.clock import within_range
from gateway.errors import BadRequest

#: Ids and counts fit SQLite's 64-bit integers.
MAX_ID = 2**63 - 1


def whole_number(raw: str, name: str, *, least: int = 1, most: int = MAX_ID) -> int:
    """`raw` as a number written in ASCII digits, from `least` to `most`; else a 400 that
    names the parameter ("²" and "٣" are digits to Python, not to this API)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not least <= int(raw) <= most:
        raise BadRequest(f"{name}: expected a whole number from {least} to {most}, "
                         f"got {raw[:40]!r}")
    return int(raw)


def limit_param(request: web.Request, default: int = 50, most: int = 500) -> int:
    return whole_number(request.query.get("limit", str(default)), "limit", most=most)


def cursor_param(request: web.Request) -> str:
    raw = request.query.get("cursor", "")
    if not raw:
        return ""
    try:
        return base64.b64decode(raw.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("cursor: not a cursor this API returned") from None


def number_cursor_param(request: web.Request) -> int:
    """A cursor that stands for a number (a sequence or a row id); 0 when absent."""
    after = cursor_param(request)
    if not after:
        return 0
    if not (after.isascii() and after.isdigit()) or int(after) > MAX_ID:
        raise BadRequest("cursor: not a cursor this API returned")
    return int(after)


def next_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


#: Deeper than any body this API takes; deeper ones are refused before they are parsed.
MAX_JSON_DEPTH = 64


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


async def json_body(request: web.Request) -> Any:
    """The body as JSON, strictly: UTF-8, no NaN or Infinity (Python's json takes them and
    they would break every later comparison), numbers of at most 4,300 digits, nesting of at
    most MAX_JSON_DEPTH. Anything else is a 400, never a traceback."""
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: not UTF-8 (byte {exc.start})") from None
    brackets = text.count("[") + text.count("{")
    if brackets > MAX_JSON_DEPTH and _depth(text) > MAX_JSON_DEPTH:
        raise BadRequest(f"the body is not valid JSON here: nested deeper than "
                         f"{MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except ValueError as exc:  # NaN/Infinity, or an integer longer than Python reads
        raise BadRequest(f"the body is not valid JSON here: {exc}") from None


def _depth(text: str) -> int:
    """How deep brackets nest, outside strings (a cheap scan before the parser recurses)."""
    depth = most = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            most = max(most, depth)
        elif char in "]}":
            depth -= 1
    return most


def phone_param(request: web.Request) -> str:
    return request.app[keys.PROFILES].normalise(request.match_info["phone"])


def time_param(raw: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or time (UTC when it names no zone); None when absent."""
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}: {raw[:60]!r} is not an ISO 8601 date or time") from None
    try:
        return within_range(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from None
