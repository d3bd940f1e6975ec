"""Admin API for consent: status and history, consent captured elsewhere, the audit export,
and the review list of doubtful messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from consent import ConsentEvent, Kind, Source, Status
from consent.export import CSV_HEADER, csv_line, jsonl_line
from gateway import keys
from gateway.db import consent as consent_sql
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.http.params import (
    json_body,
    limit_param,
    phone_param,
    time_param,
    whole_number,
)
from gateway.outbound import NewMessage

routes = web.RouteTableDef()


@routes.get("/api/v1/consent/export")
async def export(request: web.Request) -> web.StreamResponse:
    """Every ledger event (optionally of one program, since a date), streamed."""
    consent = request.app[keys.CONSENT]
    program = request.query.get("program") or None
    if program and consent.catalog.get(program) is None:
        raise BadRequest(f"program: {program!r} is not a configured program")
    since = time_param(request.query.get("since"), "since")
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "jsonl"):
        raise BadRequest("format: use csv or jsonl")
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if fmt == "csv"
        else "application/x-ndjson; charset=utf-8",
        "Content-Disposition": f'attachment; filename="consent-{program or "all"}.{fmt}"'})
    await response.prepare(request)
    if fmt == "csv":
        await response.write(CSV_HEADER.encode())
    db, after = request.app[keys.DB], 0
    while rows := await consent_sql.program_events(db, program, since, after, 1000):
        lines = [csv_line(r) if fmt == "csv" else jsonl_line(r) for r in rows]
        await response.write("".join(lines).encode())
        after = rows[-1]["id"]
    await response.write_eof()
    return response


@routes.get("/api/v1/consent/review")
async def review_list(request: web.Request) -> web.Response:
    """Messages that might be opt-outs: nothing was done with them; a person decides."""
    rows = await consent_sql.open_reviews(request.app[keys.DB], 0, limit_param(request, 100))
    return web.json_response({"review": [dict(r) for r in rows]})


@routes.post("/api/v1/consent/review/{id}")
async def resolve_review(request: web.Request) -> web.Response:
    """A person's verdict on a doubtful message: {"resolution": "opt_out" | "dismiss"}.
    An opt-out is recorded as the customer's own (source keyword), dated when they wrote."""
    review_id = whole_number(request.match_info["id"], "id")
    body = await json_body(request)
    resolution = body.get("resolution") if isinstance(body, dict) else None
    if resolution not in ("opt_out", "dismiss"):
        raise BadRequest("resolution: use opt_out or dismiss")
    db, consent = request.app[keys.DB], request.app[keys.CONSENT]
    item = await consent_sql.get_review(db, review_id)
    if item is None:
        raise NotFound(f"no review item {review_id}")
    now = request.app[keys.CLOCK].now()
    targets = consent.catalog.stop_targets(item["short_code"])
    when = datetime.fromisoformat(item["received_at"])

    async def write(tx: Any) -> list[int]:
        if not await consent_sql.resolve_review(tx, review_id, resolution, now):
            raise Conflict(f"review item {review_id} was resolved already")
        if resolution == "dismiss":
            return []
        return await consent.ledger.opt_out(tx, ConsentEvent(
            phone=item["phone"], program_id="", kind=Kind.OPT_OUT, source=Source.KEYWORD,
            occurred_at=when, inbound_sid=item["inbound_sid"], inbound_text=item["text"],
            evidence={"reviewed_at": now.isoformat(), "rule": item["rule"],
                      "short_code": item["short_code"]}), [p.id for p in targets])

    events = await db.write(write)
    request.app[keys.SYNC].wake()
    return web.json_response({"id": review_id, "resolution": resolution,
                              "consent_event_ids": events})


@routes.get("/api/v1/consent/{phone}")
async def show(request: web.Request) -> web.Response:
    phone = phone_param(request)
    consent, db = request.app[keys.CONSENT], request.app[keys.DB]
    now = request.app[keys.CLOCK].now()
    states = {s.program_id: s for s in await consent.ledger.states(db, phone)}
    programs = [states[p].to_dict(now) if p in states else {"program": p, "status": "none"}
                for p in consent.catalog.programs]
    history = [e.to_dict() for e in await consent.ledger.history(db, phone)]
    # For every marketing message: the opt-in that allowed it.
    marketing = [dict(r) for r in await consent_sql.marketing_messages(db, phone)]
    return web.json_response({"phone": phone, "programs": programs, "history": history,
                              "marketing_messages": marketing})


@routes.post("/api/v1/consent")
async def record(request: web.Request) -> web.Response:
    """Consent captured elsewhere: {"phone", "program", "action": "opt_in"|"opt_out",
    "source", "evidence": {...}, "double_opt_in": bool}. An opt-in needs evidence."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    consent = request.app[keys.CONSENT]
    phone = request.app[keys.PROFILES].normalise(str(body.get("phone", "")))
    program = consent.catalog.get(str(body.get("program", "")))
    if program is None:
        raise BadRequest(f"program: {body.get('program')!r} is not a configured program")
    action = body.get("action")
    if action not in ("opt_in", "opt_out"):
        raise BadRequest("action: use opt_in or opt_out")
    source = body.get("source", Source.API.value)
    if not isinstance(source, str) or source not in {s.value for s in Source}:
        raise BadRequest(f"source: use one of {', '.join(s.value for s in Source)}")
    evidence = body.get("evidence", {})
    if not isinstance(evidence, dict):
        raise BadRequest("evidence: expected an object")
    double = body.get("double_opt_in", False)
    if not isinstance(double, bool):
        raise BadRequest("double_opt_in: expected true or false")
    if action == "opt_in" and not evidence:
        raise BadRequest("evidence: an opt-in needs evidence of how it was given (e.g. "
                         "form_url, ip, user_agent, terms_shown, captured_at)")
    now = request.app[keys.CLOCK].now()
    texts = program.text(None)
    if action == "opt_out":
        kind = Kind.OPT_OUT
    elif double:
        kind = Kind.OPT_IN_REQUESTED
    elif source == Source.IMPORT:
        kind = Kind.IMPORTED
    else:
        kind = Kind.OPT_IN_CONFIRMED
    reply = texts.confirmation_request if kind is Kind.OPT_IN_REQUESTED else None

    async def write(tx: Any) -> tuple[int | None, str, int | None]:
        if kind is Kind.OPT_IN_REQUESTED:
            current = (await consent.ledger.state(tx, phone, program.id)).effective(now)
            if current is Status.OPTED_IN:  # never ask someone subscribed to confirm again
                return None, current.value, None
        event_id, state = await consent.ledger.record(tx, ConsentEvent(
            phone=phone, program_id=program.id, kind=kind, source=source, occurred_at=now,
            reply_text=reply, evidence=evidence))
        queued = None
        if reply is not None:
            # The confirmation request leaves through the outbound queue.
            queued = await outbound.outbox.queue(tx, NewMessage(
                to_number=phone, body=reply, program_id=program.id, purpose="transactional"),
                now)
        return event_id, state.status.value, queued

    outbound = request.app[keys.OUTBOUND]
    event_id, status, queued = await request.app[keys.DB].write(write)
    request.app[keys.SYNC].wake()
    outbound.wake(program.short_code)
    return web.json_response({"phone": phone, "program": program.id, "event_id": event_id,
                              "status": status, "queued_message_id": queued},
                             status=201 if event_id is not None else 200)

