"""Admin API for profiles (read, change, list, timeline, import, erase) and the CRM sync."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from consent.imports import consent_writer
from gateway import keys
from gateway.db import profiles as profile_sql
from gateway.db import sync as sync_sql
from gateway.db.segments import compile_segment
from gateway.errors import BadRequest, NotFound
from gateway.http.params import (
    MAX_ID,
    cursor_param,
    json_body,
    limit_param,
    next_cursor,
    number_cursor_param,
    phone_param,
)
from gateway.profile_import import import_profiles, parse_mapping
from gateway.profiles import Profile, parse_changes

routes = web.RouteTableDef()


@routes.get("/api/v1/profiles/{phone}")
async def get_profile(request: web.Request) -> web.Response:
    phone = phone_param(request)
    row = await profile_sql.get(request.app[keys.DB], phone)
    if row is None:
        raise NotFound(f"no profile for {phone}")
    return web.json_response(await _with_consent(request, Profile.from_row(row)))


async def _with_consent(request: web.Request, profile: Profile) -> dict[str, Any]:
    """The profile as JSON, with its consent status per program."""
    consent, now = request.app[keys.CONSENT], request.app[keys.CLOCK].now()
    states = {s.program_id: s.effective(now).value
              for s in await consent.ledger.states(request.app[keys.DB], profile.phone)}
    suppressed = await profile_sql.suppressed_since(request.app[keys.DB], profile.phone)
    return {**profile.to_dict(),
            "consent": {program: states.get(program, "none")
                        for program in consent.catalog.programs},
            # Erased: nothing is sent unless a newer opt-in comes.
            "suppressed_since": suppressed.isoformat() if suppressed else None}


async def _change(request: web.Request, *, replace: bool) -> web.Response:
    phone = phone_param(request)
    changes = parse_changes(await json_body(request), replace=replace)
    store, now = request.app[keys.PROFILES], request.app[keys.CLOCK].now()
    profile = await request.app[keys.DB].write(
        lambda tx: store.apply(tx, phone, changes, now, source="api"))
    request.app[keys.SYNC].wake()
    return web.json_response(await _with_consent(request, profile))


@routes.put("/api/v1/profiles/{phone}")
async def put_profile(request: web.Request) -> web.Response:
    """Replace fields, attributes and tags (counters and the timeline are kept)."""
    return await _change(request, replace=True)


@routes.patch("/api/v1/profiles/{phone}")
async def patch_profile(request: web.Request) -> web.Response:
    """Change what the body names; an attribute set to null is removed."""
    return await _change(request, replace=False)


@routes.delete("/api/v1/profiles/{phone}")
async def erase_profile(request: web.Request) -> web.Response:
    phone = phone_param(request)
    store, db = request.app[keys.PROFILES], request.app[keys.DB]
    now = request.app[keys.CLOCK].now()
    event_id = await db.write(lambda tx: store.erase(tx, phone, now))
    await db.checkpoint()
    request.app[keys.SYNC].wake()
    return web.json_response({"phone": phone, "erased": True, "event_id": event_id})


@routes.get("/api/v1/profiles")
async def list_profiles(request: web.Request) -> web.Response:
    where, params = "", []
    if "segment" in request.query:
        try:
            segment = json.loads(request.query["segment"])
        except json.JSONDecodeError as exc:
            raise BadRequest(f"segment: not valid JSON: {exc}") from None
        where, params = compile_segment(segment)
    limit = limit_param(request)
    rows = await profile_sql.page(request.app[keys.DB], after_phone=cursor_param(request),
                                  limit=limit + 1, where=where, params=params)
    more = len(rows) > limit
    profiles = [Profile.from_row(r).to_dict() for r in rows[:limit]]
    return web.json_response({
        "profiles": profiles,
        "next_cursor": next_cursor(profiles[-1]["phone"]) if more else None})


@routes.get("/api/v1/profiles/{phone}/timeline")
async def timeline(request: web.Request) -> web.Response:
    phone = phone_param(request)
    db = request.app[keys.DB]
    if await profile_sql.get(db, phone) is None:
        raise NotFound(f"no profile for {phone}")
    limit = limit_param(request, default=100)
    rows = await profile_sql.timeline(db, phone, after_seq=number_cursor_param(request),
                                      limit=limit + 1)
    events = [{"event_id": r["event_id"], "sequence": r["seq"], "type": r["type"],
               "occurred_at": r["occurred_at"], "data": json.loads(r["data_json"])}
              for r in rows[:limit]]
    more = len(rows) > limit
    return web.json_response({
        "events": events,
        "next_cursor": next_cursor(str(events[-1]["sequence"])) if more else None})


@routes.post("/api/v1/profiles/import")
async def import_endpoint(request: web.Request) -> web.Response:
    """CSV or JSON Lines in the body; `?map=`, `?atomic=true`, `?format=csv|jsonl`."""
    config = request.app[keys.CONFIG]
    fmt = request.query.get("format") or (
        "jsonl" if request.content_type in ("application/x-ndjson", "application/jsonl")
        else "csv")
    limit = config.imports.max_bytes
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the file is not UTF-8 text: {exc}") from None
    atomic = request.query.get("atomic", "false").lower() in ("1", "true", "yes")
    consent = request.app[keys.CONSENT]
    report = await import_profiles(
        request.app[keys.DB], request.app[keys.PROFILES], text.splitlines(keepends=True),
        fmt=fmt, at=request.app[keys.CLOCK].now(),
        mapping=parse_mapping(request.query.get("map", "")), atomic=atomic,
        committed=request.app[keys.SYNC].wake, size_hint=len(data),
        consent_writer=consent_writer(consent.ledger),
        programs=frozenset(consent.catalog.programs))
    if not report.applied:
        return web.json_response({"error": {
            "code": "import_rejected",
            "message": f"{report.invalid} invalid rows: nothing was imported (atomic mode)"},
            "report": report.to_dict()}, status=400)
    return web.json_response(report.to_dict())


@routes.get("/api/v1/sync/status")
async def sync_status(request: web.Request) -> web.Response:
    return web.json_response({"endpoints": await request.app[keys.SYNC].status()})


@routes.get("/api/v1/sync/dead-letters")
async def dead_letters(request: web.Request) -> web.Response:
    endpoint = request.query.get("endpoint") or None
    limit = limit_param(request, default=100)
    rows = await sync_sql.dead_letters(request.app[keys.DB], endpoint,
                                       number_cursor_param(request), limit + 1)
    items = [dict(r) for r in rows[:limit]]
    more = len(rows) > limit
    return web.json_response({"dead_letters": items,
                              "next_cursor": next_cursor(str(items[-1]["id"])) if more
                              else None})


_ALL = object()  # no endpoint named: every endpoint's dead letters


@routes.post("/api/v1/sync/dead-letters/replay")
async def replay(request: web.Request) -> web.Response:
    """Body (optional): {"endpoint": NAME, "ids": [...]}; replays all dead letters otherwise."""
    body: dict[str, Any] = {}
    if request.can_read_body:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - {"endpoint", "ids"})
    if unknown:  # a misspelt "endpoint" must not replay every endpoint's letters
        raise BadRequest(f"{unknown[0][:40]}: unknown field (known: endpoint, ids)")
    endpoint = body.get("endpoint", _ALL)
    hub = request.app[keys.SYNC]
    if endpoint is _ALL:
        endpoint = None
    elif not isinstance(endpoint, str) or hub.relay(endpoint) is None:
        raise BadRequest(f"endpoint: {endpoint!r} is not a configured sync endpoint")
    ids = body.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(
            type(i) is int and 1 <= i <= MAX_ID for i in ids)):
        raise BadRequest("ids: expected an array of dead-letter ids")
    now = request.app[keys.CLOCK].now()
    count = await request.app[keys.DB].write(lambda tx: sync_sql.replay(tx, endpoint, ids, now))
    hub.wake()
    return web.json_response({"replayed": count})
