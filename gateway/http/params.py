"""Reading the common parts of an admin API request, with clear 400s."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.errors import BadRequest


def limit_param(request: web.Request, default: int = 50, most: int = 500) -> int:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise BadRequest(f"limit must be a whole number from 1 to {most}")
    return int(raw)


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
    if after and not after.isdigit():
        raise BadRequest("cursor: not a cursor this API returned")
    return int(after or 0)


def next_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


async def json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def phone_param(request: web.Request) -> str:
    return request.app[keys.PROFILES].normalise(request.match_info["phone"])


def time_param(raw: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or time (UTC when it names no zone); None when absent."""
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}: {raw!r} is not an ISO 8601 date or time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
