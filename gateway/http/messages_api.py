"""Admin API for outbound messages: send one, read the delivery log, see the queue."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.db import Row
from gateway.db import outbound as sql
from gateway.errors import BadRequest, InvalidNumber, NotFound
from gateway.http.params import (
    json_body,
    limit_param,
    next_cursor,
    number_cursor_param,
    time_param,
    whole_number,
)
from gateway.outbound import NewMessage
from gateway.phone import to_e164

routes = web.RouteTableDef()

STATUSES = ("queued", "deferred", "sending", "sent", "delivered", "undelivered",
            "failed", "cancelled", "expired")
_FIELDS = {"to", "body", "program", "purpose", "validity_seconds", "send_at"}


@routes.post("/api/v1/messages")
async def send(request: web.Request) -> web.Response:
    """Queue one message; the consent decision is taken when it goes, not now."""
    payload = await json_body(request)
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field (known: {', '.join(sorted(_FIELDS))})")
    for name in ("to", "body", "program"):
        if not isinstance(payload.get(name), str):
            raise BadRequest(f"{name}: required, a string")
    purpose = payload.get("purpose", "transactional")
    if purpose not in ("transactional", "reply"):
        raise BadRequest("purpose: 'transactional' or 'reply' (marketing goes out through "
                         "campaigns)")
    validity = payload.get("validity_seconds")
    if validity is not None and (isinstance(validity, bool) or not isinstance(validity, int)
                                 or validity <= 0):
        raise BadRequest("validity_seconds: a positive whole number")
    send_at = payload.get("send_at")
    if send_at is not None and not isinstance(send_at, str):
        raise BadRequest("send_at: an ISO 8601 date-time")
    try:
        phone = to_e164(payload["to"], request.app[keys.CONFIG].phone.default_region)
    except InvalidNumber as exc:
        raise InvalidNumber(f"to: {exc}") from None
    message = NewMessage(
        to_number=phone, body=payload["body"], program_id=payload["program"], purpose=purpose,
        validity=timedelta(seconds=validity) if validity else None,
        not_before=time_param(send_at, "send_at"))
    [message_id] = await request.app[keys.OUTBOUND].queue([message])
    row = await sql.get(request.app[keys.DB], message_id)
    assert row is not None
    return web.json_response(message_json(row), status=202)


@routes.get("/api/v1/messages")
async def search(request: web.Request) -> web.Response:
    """The delivery log, newest first."""
    query = request.query
    phone = query.get("phone")
    if phone:
        phone = request.app[keys.PROFILES].normalise(phone)
    status = query.get("status")
    if status and status not in STATUSES:
        raise BadRequest(f"status: one of {', '.join(STATUSES)}")
    limit = limit_param(request)
    rows = await sql.search(request.app[keys.DB], phone=phone, campaign=query.get("campaign"),
                            status=status, since=time_param(query.get("since"), "since"),
                            after_id=number_cursor_param(request), limit=limit)
    more = len(rows) == limit
    return web.json_response({
        "messages": [message_json(r) for r in rows],
        "next_cursor": next_cursor(str(rows[-1]["id"])) if more else None})


@routes.get("/api/v1/messages/{id}")
async def show(request: web.Request) -> web.Response:
    """One message with everything that happened to it: our steps and the receipts."""
    raw = request.match_info["id"]
    message_id = whole_number(raw, "id")
    db = request.app[keys.DB]
    row = await sql.get(db, message_id)
    if row is None:
        raise NotFound(f"no message #{raw}")
    events = [{"at": e["at"], "event": e["event"], "status": e["status"],
               "error_code": e["error_code"],
               **({"detail": json.loads(e["detail"])} if e["detail"] else {})}
              for e in await sql.events(db, message_id)]
    receipts = []
    if row["provider_sid"]:
        receipts = [{"at": r["received_at"], "status": r["status"],
                     "error_code": r["error_code"], "params": json.loads(r["params_json"])}
                    for r in await sql.receipts(db, row["provider"], row["provider_sid"])]
    return web.json_response({**message_json(row), "events": events, "receipts": receipts})


@routes.get("/api/v1/queue")
async def queue(request: web.Request) -> web.Response:
    """Per short code: how much waits and how long it takes to send at the current rate."""
    return web.json_response({"short_codes": await request.app[keys.OUTBOUND].queue_status()})


def message_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"], "to": row["to_number"], "from": row["from_number"],
        "body": row["body"], "status": row["status"], "reason": row["reason"],
        "program": row["program_id"], "purpose": row["purpose"],
        "campaign": row["campaign_id"], "encoding": row["encoding"],
        "segments": row["segments"], "attempts": row["attempts"],
        "provider": row["provider"], "provider_sid": row["provider_sid"],
        "error_code": row["error_code"], "error_message": row["error_message"],
        "created_at": row["created_at"], "sent_at": row["sent_at"],
        "next_attempt_at": row["next_attempt_at"], "expires_at": row["expires_at"],
        "consent_event_id": row["consent_event_id"], "in_reply_to": row["in_reply_to"]}
