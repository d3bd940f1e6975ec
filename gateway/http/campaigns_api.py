"""Admin API for campaigns: define, preview, schedule, pause, resume, cancel, stats."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from campaigns import Campaign
from campaigns.model import KINDS, STATUSES
from gateway import keys
from gateway.errors import BadRequest
from gateway.http.params import cursor_param, json_body, limit_param, next_cursor

routes = web.RouteTableDef()

MAX_CODES = 100_000
MAX_CODE_LENGTH = 64


def campaign_json(campaign: Campaign, request: web.Request) -> dict[str, Any]:
    now = request.app[keys.CLOCK].now()
    return {"id": campaign.id, "name": campaign.name, "kind": campaign.kind,
            "program": campaign.program_id, "status": campaign.effective_status(now),
            "next_run_at": campaign.next_run_at.isoformat() if campaign.next_run_at else None,
            "definition": campaign.spec.to_dict(),
            "created_at": campaign.created_at, "updated_at": campaign.updated_at}


async def _optional_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    if not (await request.read()).strip():
        return None
    return await json_body(request)  # strict: not UTF-8 is a 400 there


@routes.post("/api/v1/campaigns")
async def create(request: web.Request) -> web.Response:
    campaign = await request.app[keys.CAMPAIGNS].create(await json_body(request))
    return web.json_response(campaign_json(campaign, request), status=201)


@routes.get("/api/v1/campaigns")
async def search(request: web.Request) -> web.Response:
    status, kind = request.query.get("status"), request.query.get("kind")
    if status and status not in STATUSES:
        raise BadRequest(f"status: one of {', '.join(STATUSES)}")
    if kind and kind not in KINDS:
        raise BadRequest(f"kind: one of {', '.join(KINDS)}")
    limit = limit_param(request)
    found = await request.app[keys.CAMPAIGNS].list(
        status=status, kind=kind, before=cursor_param(request), limit=limit)
    return web.json_response({
        "campaigns": [campaign_json(c, request) for c in found],
        "next_cursor": next_cursor(found[-1].id) if len(found) == limit else None})


@routes.get("/api/v1/campaigns/{id}")
async def show(request: web.Request) -> web.Response:
    service = request.app[keys.CAMPAIGNS]
    campaign = await service.get(request.match_info["id"])
    return web.json_response({**campaign_json(campaign, request),
                              "runs": await service.runs(campaign.id)})


@routes.patch("/api/v1/campaigns/{id}")
async def update(request: web.Request) -> web.Response:
    campaign = await request.app[keys.CAMPAIGNS].update(request.match_info["id"],
                                                        await json_body(request))
    return web.json_response(campaign_json(campaign, request))


@routes.post("/api/v1/campaigns/{id}/preview")
async def preview(request: web.Request) -> web.Response:
    return web.json_response(await request.app[keys.CAMPAIGNS].preview(
        request.match_info["id"]))


@routes.post("/api/v1/campaigns/{id}/schedule")
async def schedule(request: web.Request) -> web.Response:
    """The body, if any, is the schedule ({"at": ...}, {"now": true}, {"cron": ...} …);
    without one the campaign's own schedule is used."""
    campaign = await request.app[keys.CAMPAIGNS].schedule(request.match_info["id"],
                                                          await _optional_body(request))
    return web.json_response(campaign_json(campaign, request))


def _lifecycle(action: str) -> None:
    """POST /api/v1/campaigns/{id}/pause, /resume, /cancel."""

    async def view(request: web.Request) -> web.Response:
        service = request.app[keys.CAMPAIGNS]
        campaign = await getattr(service, action)(request.match_info["id"])
        return web.json_response(campaign_json(campaign, request))

    routes.post(f"/api/v1/campaigns/{{id}}/{action}")(view)


for _action in ("pause", "resume", "cancel"):
    _lifecycle(_action)


@routes.get("/api/v1/campaigns/{id}/stats")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(await request.app[keys.CAMPAIGNS].stats(request.match_info["id"]))


@routes.post("/api/v1/campaigns/{id}/codes")
async def add_codes(request: web.Request) -> web.Response:
    """A pull campaign's coupon pool: {"codes": [...]}; a code already in it is kept once."""
    payload = await json_body(request)
    codes = payload.get("codes") if isinstance(payload, dict) else None
    if (not isinstance(codes, list) or not codes or len(codes) > MAX_CODES
            or not all(isinstance(c, str) and 0 < len(c.strip()) <= MAX_CODE_LENGTH
                       for c in codes)):
        raise BadRequest(f"codes: a list of 1 to {MAX_CODES} codes, each 1 to "
                         f"{MAX_CODE_LENGTH} characters")
    return web.json_response(await request.app[keys.CAMPAIGNS].add_codes(
        request.match_info["id"], [c.strip() for c in codes]))
